// Package web holds leafd's web console: hand-written HTML, CSS and
// JavaScript with no build step (so the committed files are the assets;
// nothing to regenerate), embedded in leafd and served on its API
// listeners under /console/ with the API's roles.
package web

import (
	"embed"
	"io/fs"
)

//go:embed console
var files embed.FS

// Console is the console's files, rooted at its directory.
var Console, _ = fs.Sub(files, "console")

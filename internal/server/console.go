package server

import (
	"net/http"

	"github.com/leaf-ebpf/leaf/web"
)

// consoleFiles serves the embedded console under /console/.
var consoleFiles = http.StripPrefix("/console/", http.FileServer(http.FS(web.Console)))

// console serves the web console's files. They are the same for every
// caller; the page reads and changes state only through the API.
func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	consoleFiles.ServeHTTP(w, r)
}

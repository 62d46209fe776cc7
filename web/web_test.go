package web

import (
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The console loads nothing from the network: no URL in its files but
// the SVG namespace (a name, never fetched), and every file it loads is
// one of its own.
func TestConsoleLoadsNothingFromTheNetwork(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'<>)]*`)
	err := fs.WalkDir(Console, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(Console, path)
		if err != nil {
			return err
		}
		for _, u := range url.FindAllString(string(data), -1) {
			if u != "http://www.w3.org/2000/svg" {
				t.Errorf("%s refers to %s: the console must load nothing from the network", path, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	index, _ := fs.ReadFile(Console, "index.html")
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(string(index), -1) {
		if _, err := fs.Stat(Console, m[1]); err != nil {
			t.Errorf("index.html loads %s, which the console does not hold", m[1])
		}
	}
}

// The script parses (node --check), so a syntax error fails CI rather
// than a browser.
func TestConsoleScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed (scripts/install-deps.sh)")
	}
	if out, err := exec.Command(node, "--check", "console/app.js").CombinedOutput(); err != nil {
		t.Fatalf("console/app.js: %v\n%s", err, strings.TrimSpace(string(out)))
	}
}

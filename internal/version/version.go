// Package version says which build of leaf is running, for `leaf
// version`, `leafd --version` and the leaf_build_info metric.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time by release builds:
//
//	-ldflags "-X github.com/leaf-ebpf/leaf/internal/version.Version=v1.2.3"
//
// Otherwise it is the module version Go recorded, or "devel".
var Version string

// Info is what a build knows about itself.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
}

// Get reads the build's version, VCS revision and Go version.
func Get() Info {
	in := Info{Version: Version, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	return in
}

// String is one line: "devel (rev 1a2b3c4d5e6f, modified) go1.26.8".
func (in Info) String() string {
	s := in.Version
	if in.Revision != "" {
		r := in.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		s += " (rev " + r
		if in.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + in.GoVersion
}

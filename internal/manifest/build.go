package manifest

import (
	"fmt"
	"strings"
)

// Build says how `leaf pkg build` compiles the package's *.bpf.c.
type Build struct {
	// CFlags are added to clang's command line (-D, -W, -O, -f, -m, -g
	// and -std flags; never -o, plugins or -Xclang).
	CFlags []string `json:"cflags,omitempty"`
	// Include are header directories inside the package (-I).
	Include []string `json:"include,omitempty"`
}

// maxBuildFlags bounds the build section.
const maxBuildFlags = 64

// CheckCFlag refuses compiler flags a package must not pass: output
// redirection, plugins, and flags leaf sets itself for reproducibility.
func CheckCFlag(f string) error {
	allowed := []string{"-D", "-U", "-W", "-O", "-f", "-m", "-g", "-std="}
	ok := false
	for _, p := range allowed {
		ok = ok || strings.HasPrefix(f, p)
	}
	for _, bad := range []string{"-fplugin", "-fpass-plugin", "-fdebug-prefix-map", "-ffile-prefix-map", "-fmacro-prefix-map", "-fprofile"} {
		if strings.HasPrefix(f, bad) {
			ok = false
		}
	}
	if !ok || len(f) > 256 || strings.ContainsAny(f, "\x00\n") {
		return fmt.Errorf("%q is not a flag leaf passes to clang (want -D, -U, -W, -O, -f, -m, -g or -std=; no plugins or prefix maps)", f)
	}
	return nil
}

func (b *Build) validate() []error {
	var errs []error
	if len(b.CFlags) > maxBuildFlags || len(b.Include) > maxBuildFlags {
		errs = append(errs, fmt.Errorf("build: at most %d cflags and %d include directories", maxBuildFlags, maxBuildFlags))
	}
	for i, f := range b.CFlags {
		if err := CheckCFlag(f); err != nil {
			errs = append(errs, fmt.Errorf("build.cflags[%d]: %v", i, err))
		}
	}
	for i, d := range b.Include {
		if d != "." && !RelativePath(d) {
			errs = append(errs, fmt.Errorf("build.include[%d]: %q must be a directory inside the package", i, d))
		}
	}
	return errs
}

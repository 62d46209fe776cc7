package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// checkProbeTargets keeps callers below admin from using leafd (root) to
// learn about files they could not read themselves: a dry run naming a
// uprobe binary would otherwise answer "no such file" for one path and
// something else for a root-only one. Such a caller may name only
// binaries every user can read, and gets one answer for everything else,
// whether it exists or not.
func checkProbeTargets(st *desired.State, id auth.Identity) error {
	if id.Role.Allows(auth.Admin) {
		return nil
	}
	for i, a := range st.Spec.Attachments {
		if a.Hook.Type != manifest.HookUprobe || a.Hook.Binary == "" {
			continue
		}
		if !readableByAll(a.Hook.Binary) {
			return fmt.Errorf("attachments[%d].hook.binary: %s does not exist or is not readable by every user; only an admin may probe other binaries (and learn which it is)", i, a.Hook.Binary)
		}
	}
	return nil
}

// readableByAll reports whether any user could read path: every directory
// on the way (as written and as resolved) searchable by others, and the
// file itself a regular file others may read.
func readableByAll(path string) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	for _, p := range []string{path, real} {
		dir := "/"
		for _, part := range strings.Split(strings.Trim(filepath.Dir(p), "/"), "/") {
			if part == "" {
				continue
			}
			dir = filepath.Join(dir, part)
			fi, err := os.Stat(dir)
			if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o001 == 0 {
				return false
			}
		}
	}
	fi, err := os.Stat(real)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o004 != 0
}

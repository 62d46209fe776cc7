// Package mapfds opens the maps a package's companion works on: the
// descriptors leafd passes it (LEAF_MAP_FDS, "flows=3,stats=4"), or, for
// an operator running the same tool by hand, leafd's pins of an
// attachment (<bpffs>/attachments/<name>/maps).
package mapfds

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// Open returns the named maps, from pinDir when it is set, else from
// LEAF_MAP_FDS. Every name must be found.
func Open(pinDir string, names ...string) (map[string]*ebpf.Map, error) {
	maps := map[string]*ebpf.Map{}
	if pinDir != "" {
		for _, n := range names {
			m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, n), nil)
			if err != nil {
				return nil, fmt.Errorf("open pinned map: %w", err)
			}
			maps[n] = m
		}
		return maps, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, kv := range strings.Split(os.Getenv("LEAF_MAP_FDS"), ",") {
		name, fdText, ok := strings.Cut(kv, "=")
		if !ok || !want[name] {
			continue
		}
		fd, err := strconv.Atoi(fdText)
		if err != nil {
			return nil, fmt.Errorf("LEAF_MAP_FDS: %q", kv)
		}
		m, err := ebpf.NewMapFromFD(fd)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", name, err)
		}
		maps[name] = m
	}
	for _, n := range names {
		if maps[n] == nil {
			return nil, fmt.Errorf("map %s: not in LEAF_MAP_FDS (run as the package's companion, or give the pin directory)", n)
		}
	}
	return maps, nil
}

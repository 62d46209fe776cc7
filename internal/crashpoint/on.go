//go:build leafcrash

package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	mu    sync.Mutex
	point string
	nth   = 1
	seen  = map[string]int{}
	trace *os.File
)

func init() {
	spec := os.Getenv("LEAF_CRASH_AT")
	point = spec
	if p, n, ok := strings.Cut(spec, ":"); ok {
		point = p
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			nth = v
		}
	}
	if f := os.Getenv("LEAF_CRASH_LOG"); f != "" {
		trace, _ = os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	}
}

// Hit kills the process with SIGKILL if p is the configured point and
// this is its n-th hit.
func Hit(p string) {
	mu.Lock()
	defer mu.Unlock()
	seen[p]++
	if trace != nil {
		trace.WriteString(p + "\n")
	}
	if p == point && seen[p] == nth {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns: the signal is on its way
	}
}

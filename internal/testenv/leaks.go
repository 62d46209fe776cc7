package testenv

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs a package's tests and then fails the run if they leaked file
// descriptors or goroutines: BPF objects, links, sockets and netns handles
// are all descriptors, and a leaked one keeps a program or map alive. Use it
// from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	fds := openFDs()
	goroutines := countGoroutines()
	code := m.Run()
	if code == 0 {
		if err := checkLeaks(fds, goroutines); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkLeaks waits briefly for finalizers and exiting goroutines, then
// compares with the counts taken before the tests.
func checkLeaks(fds map[string]string, goroutines int) error {
	var leaked []string
	var extra int
	for range 50 {
		runtime.GC()
		leaked = leaked[:0]
		for fd, target := range openFDs() {
			if _, ok := fds[fd]; !ok {
				leaked = append(leaked, fd+" -> "+target)
			}
		}
		extra = countGoroutines() - goroutines
		if len(leaked) == 0 && extra <= 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(leaked) > 0 {
		return fmt.Errorf("%d file descriptors left open: %s", len(leaked), strings.Join(leaked, ", "))
	}
	buf := make([]byte, 1<<20)
	return fmt.Errorf("%d goroutines left running:\n%s", extra, buf[:runtime.Stack(buf, true)])
}

func openFDs() map[string]string {
	out := map[string]string{}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return out
	}
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, already closed
		}
		if target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" {
			continue // the Go runtime's network poller, opened once on first use
		}
		out[e.Name()] = target
	}
	return out
}

// unstoppable lists libraries whose goroutines tests cannot stop: the
// distribution registry the package tests run in-process starts a
// notification broadcaster that has no Close.
var unstoppable = []string{"github.com/docker/go-events."}

// countGoroutines counts running goroutines, less those of unstoppable.
func countGoroutines() int {
	buf := make([]byte, 8<<20)
	stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	n := 0
	for _, st := range stacks {
		skip := false
		for _, lib := range unstoppable {
			if strings.Contains(st, lib) {
				skip = true
			}
		}
		if !skip && strings.TrimSpace(st) != "" {
			n++
		}
	}
	return n
}

package enforcer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Target that records the causes of the checks it is asked
// for.
type recorder struct {
	mu     sync.Mutex
	causes []string
	ch     chan string
}

func (r *recorder) Enforce(_ context.Context, cause string) {
	r.mu.Lock()
	r.causes = append(r.causes, cause)
	r.mu.Unlock()
	r.ch <- cause
}

func (r *recorder) next(t *testing.T) string {
	t.Helper()
	select {
	case c := <-r.ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no check")
		return ""
	}
}

func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-r.ch:
		t.Fatalf("unexpected check: %s", c)
	case <-time.After(d):
	}
}

func start(t *testing.T, root string, interval time.Duration) (*Enforcer, *recorder) {
	t.Helper()
	rec := &recorder{ch: make(chan string, 100)}
	e := New(Config{Target: rec, BPFFS: root, Interval: interval})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if c := rec.next(t); c != "start" {
		t.Fatalf("first check %q, want start", c)
	}
	return e, rec
}

// TestBurstIsOneCheck: many triggers within the debounce window make one
// check, naming its causes.
func TestBurstIsOneCheck(t *testing.T) {
	e, rec := start(t, t.TempDir(), 0)
	for i := 0; i < 20; i++ {
		e.Trigger("event")
	}
	if c := rec.next(t); !strings.HasPrefix(c, "event") {
		t.Fatalf("check cause %q", c)
	}
	rec.none(t, 200*time.Millisecond)
}

// TestPinRemovalWakesCheck: removing a file under the root, also in a
// directory created after the watcher started, wakes a check; removing
// a staging pin does not.
func TestPinRemovalWakesCheck(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "attachments", "a", "maps"), 0o700)
	_, rec := start(t, root, 0)
	pin := filepath.Join(root, "attachments", "a", "maps", "m")
	os.WriteFile(pin, nil, 0o600)
	rec.none(t, 100*time.Millisecond) // creating is no drift
	os.Remove(pin)
	if c := rec.next(t); c != "pin attachments/a/maps/m removed" {
		t.Fatalf("check cause %q", c)
	}
	late := filepath.Join(root, "attachments", "b")
	os.MkdirAll(late, 0o700)
	time.Sleep(50 * time.Millisecond)
	os.WriteFile(filepath.Join(late, "prog"), nil, 0o600)
	os.WriteFile(filepath.Join(late, "prog_next"), nil, 0o600)
	os.Remove(filepath.Join(late, "prog_next"))
	rec.none(t, 100*time.Millisecond)
	os.Remove(filepath.Join(late, "prog"))
	if c := rec.next(t); c != "pin attachments/b/prog removed" {
		t.Fatalf("check cause %q", c)
	}
}

// TestPeriodicScan: without events, the scan checks every interval.
func TestPeriodicScan(t *testing.T) {
	_, rec := start(t, t.TempDir(), 30*time.Millisecond)
	for i := 0; i < 3; i++ {
		if c := rec.next(t); c != "periodic scan" {
			t.Fatalf("check cause %q", c)
		}
	}
}

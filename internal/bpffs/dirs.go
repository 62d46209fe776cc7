package bpffs

import (
	"io"
	"os"
	"sync"
	"syscall"
)

// Dirs lists directories through descriptors it keeps open, so that a
// listing walks no bpffs path. On bpffs every path walk (a stat, an open,
// a pin lookup, even of a name that does not exist) leaves work for the
// kernel's next RCU grace period, which the scheduler tick then starts;
// an XDP or TCX attach shortly after must wait for that grace period to
// end before its own, one to three ticks more (docs/benchmarks.md, "Where
// a one-program apply's time goes"). Observing the pins before every
// apply was the bulk of leafd's path walks, so its two listings go
// through here. A nil *Dirs lists by path.
type Dirs struct {
	mu   sync.Mutex
	open map[string]*os.File
}

// list returns the entries of dir (an error satisfying
// errors.Is(err, os.ErrNotExist) when there is no dir).
func (d *Dirs) list(dir string) ([]os.DirEntry, error) {
	if d == nil {
		return os.ReadDir(dir)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := d.held(dir)
	if err != nil {
		return nil, err
	}
	// Rewinding moves the directory's cursor; no new one is made.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return f.ReadDir(-1)
}

// held returns the open descriptor of dir, opening it again when the one
// held is of a directory since removed (leafd's bpffs root wiped, say).
func (d *Dirs) held(dir string) (*os.File, error) {
	if f := d.open[dir]; f != nil {
		if st, err := f.Stat(); err == nil && st.Sys().(*syscall.Stat_t).Nlink > 0 {
			return f, nil
		}
		f.Close()
		delete(d.open, dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if d.open == nil {
		d.open = map[string]*os.File{}
	}
	d.open[dir] = f
	return f, nil
}

// Close closes the descriptors (a bpffs with one open cannot be
// unmounted).
func (d *Dirs) Close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.open {
		f.Close()
	}
	d.open = nil
}

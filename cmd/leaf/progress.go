package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/term"
	"oras.land/oras-go/v2"
)

// progress reports a long copy (pkg push, pkg pull) on one line of a
// terminal, rewritten in place. It is quiet when the output is not a
// terminal, so scripts and logs see only the final result.
type progress struct {
	w     io.Writer
	verb  string
	every time.Duration

	mu          sync.Mutex
	blobs, done int
	total, sent int64
	last        time.Time
	shown       bool
}

// newProgress reports to w when tty is true; otherwise it reports nothing.
func newProgress(w io.Writer, tty bool, verb string) *progress {
	if !tty {
		return nil
	}
	return &progress{w: w, verb: verb, every: 100 * time.Millisecond}
}

// stderrProgress reports on stderr if stderr is a terminal.
func stderrProgress(verb string) *progress {
	return newProgress(os.Stderr, term.IsTerminal(int(os.Stderr.Fd())), verb)
}

// hook adds the progress callbacks to copy options. A nil progress
// leaves them as they are.
func (p *progress) hook(o *oras.CopyGraphOptions) {
	if p == nil {
		return
	}
	o.PreCopy = func(_ context.Context, d ocispec.Descriptor) error {
		p.mu.Lock()
		p.blobs++
		p.total += d.Size
		p.mu.Unlock()
		return nil
	}
	o.PostCopy = func(_ context.Context, d ocispec.Descriptor) error { p.add(d.Size); return nil }
	o.OnCopySkipped = func(_ context.Context, d ocispec.Descriptor) error {
		p.mu.Lock()
		p.blobs++
		p.total += d.Size
		p.mu.Unlock()
		p.add(d.Size)
		return nil
	}
}

func (p *progress) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.sent += n
	if now := time.Now(); now.Sub(p.last) >= p.every || p.done == p.blobs {
		p.last = now
		p.shown = true
		fmt.Fprintf(p.w, "\r%s: %d/%d blobs, %s/%s ", p.verb, p.done, p.blobs, humanBytes(p.sent), humanBytes(p.total))
	}
}

// finish ends the progress line so the result prints on its own line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

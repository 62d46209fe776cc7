// Package enforcer decides when leafd checks for drift. Three sources wake
// a check:
//
//   - netlink link events (RTM_NEWLINK/RTM_DELLINK) in every network
//     namespace the desired XDP and TC hooks use: an interface going or
//     coming back, an XDP program attached through netlink;
//   - inotify on leaf's bpffs root: a pin removed;
//   - a periodic scan, the safety net for what the kernel announces
//     nowhere (a bpf_link detached by ID, TCX programs added or removed).
//
// Bursts are debounced into one check. The check itself — detect, report,
// remove foreign programs, repair — is the reconciler's (Target.Enforce),
// under its lock.
package enforcer

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// Target runs one check.
type Target interface {
	Enforce(ctx context.Context, cause string)
}

// Config configures an Enforcer.
type Config struct {
	Target Target
	// BPFFS is leaf's root on the bpf file system.
	BPFFS string
	// Interval between periodic scans; 0 disables them.
	Interval time.Duration
	// Debounce is the quiet time after an event before checking; a burst
	// of events waits at most 4×Debounce.
	Debounce time.Duration
	Logger   *slog.Logger
}

// Defaults.
const (
	DefaultInterval = time.Second
	DefaultDebounce = 20 * time.Millisecond
)

// Enforcer runs the checks. Create it with New, start it with Run.
type Enforcer struct {
	cfg      Config
	triggers chan string
	watchNS  chan []string
}

// New returns an enforcer; nothing runs until Run.
func New(cfg Config) *Enforcer {
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{cfg: cfg, triggers: make(chan string, 64), watchNS: make(chan []string, 1)}
}

// SetTarget sets the Target when it could not be built before the
// enforcer; call it before Run.
func (e *Enforcer) SetTarget(t Target) { e.cfg.Target = t }

// Trigger asks for a check soon. It never blocks: when checks are already
// pending, one more cause changes nothing.
func (e *Enforcer) Trigger(cause string) {
	select {
	case e.triggers <- cause:
	default:
	}
}

// Watch sets the network namespaces whose link events wake a check ("" is
// leafd's own). The latest call wins; it never blocks.
func (e *Enforcer) Watch(namespaces []string) {
	for {
		select {
		case e.watchNS <- namespaces:
			return
		default:
		}
		select {
		case <-e.watchNS: // drop the older set
		default:
		}
	}
}

// Run checks once at start, then whenever a source wakes it, until ctx is
// done.
func (e *Enforcer) Run(ctx context.Context) {
	links := newLinkWatcher(e.Trigger, e.cfg.Logger)
	defer links.close()
	pins, err := newPinWatcher(e.cfg.BPFFS, e.Trigger)
	if err != nil {
		e.cfg.Logger.Warn("pin watcher unavailable: removed pins are found by the periodic scan", "error", err)
	} else {
		defer pins.close()
	}
	var tick <-chan time.Time
	if e.cfg.Interval > 0 {
		t := time.NewTicker(e.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var causes []string
	var first time.Time
	e.Trigger("start")
	for {
		select {
		case <-ctx.Done():
			return
		case ns := <-e.watchNS:
			links.set(ns)
		case <-tick:
			links.retry()
			if len(causes) == 0 {
				e.cfg.Target.Enforce(ctx, "periodic scan")
			}
		case c := <-e.triggers:
			now := time.Now()
			if len(causes) == 0 {
				first = now
			}
			if len(causes) < 8 {
				causes = append(causes, c)
			}
			// Wait for the burst to settle, but not forever.
			debounce.Reset(min(e.cfg.Debounce, first.Add(4*e.cfg.Debounce).Sub(now)))
		case <-debounce.C:
			cause := strings.Join(causes, ", ")
			causes = causes[:0]
			e.cfg.Target.Enforce(ctx, cause)
		}
	}
}

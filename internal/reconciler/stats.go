package reconciler

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

const statsSysctl = "/proc/sys/kernel/bpf_stats_enabled"

var (
	sysctlOnce sync.Once
	sysctlFile *os.File
)

// sysctlEnabled reports whether the kernel.bpf_stats_enabled sysctl is on.
// Every apply asks, twice; the file stays open and is read in place.
func sysctlEnabled() bool {
	sysctlOnce.Do(func() { sysctlFile, _ = os.Open(statsSysctl) })
	if sysctlFile == nil {
		return false
	}
	var b [8]byte
	n, err := sysctlFile.ReadAt(b[:], 0)
	if n == 0 && err != nil {
		return false
	}
	return strings.TrimSpace(string(b[:n])) != "0"
}

// Enabled reports whether the kernel is collecting per-program run counts
// and run times, by leafd's request or through the sysctl.
func (s *Stats) Enabled() bool {
	return s.Requested() || sysctlEnabled()
}

// Stats holds leafd's request to the kernel for BPF statistics. The kernel
// keeps them on while any holder's descriptor is open, so they stop when
// leafd stops (or is disabled) unless someone else asked too.
type Stats struct {
	mu      sync.Mutex
	closer  io.Closer
	persist func(on bool) error
}

// SetPersist makes Set record each change with persist, so that it
// survives a restart.
func (s *Stats) SetPersist(persist func(on bool) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.persist = persist
}

// Set turns leafd's request on or off, and records the choice.
func (s *Stats) Set(on bool) error {
	if err := s.set(on); err != nil {
		return err
	}
	s.mu.Lock()
	persist := s.persist
	s.mu.Unlock()
	if persist != nil {
		if err := persist(on); err != nil {
			return fmt.Errorf("record BPF statistics setting: %w", err)
		}
	}
	return nil
}

// Restore turns the request on or off without recording it again.
func (s *Stats) Restore(on bool) error { return s.set(on) }

func (s *Stats) set(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && s.closer == nil {
		c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			return fmt.Errorf("enable BPF statistics: %w", err)
		}
		s.closer = c
	}
	if !on && s.closer != nil {
		err := s.closer.Close()
		s.closer = nil
		return err
	}
	return nil
}

// Requested reports whether leafd holds a request.
func (s *Stats) Requested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closer != nil
}

package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// MapNames are the firewall program's maps that Install writes.
var MapNames = []string{"fw_active", "fw_config", "fw_src4", "fw_dst4", "fw_src6", "fw_dst6", "fw_rules", "fw_cands", "fw_hits"}

// Maps are an attachment's firewall maps, from a loaded collection, from
// pins (leafd's attachments/<name>/maps/) or from descriptors a companion
// inherited.
type Maps map[string]*ebpf.Map

// Check reports a missing map.
func (m Maps) Check() error {
	for _, n := range MapNames {
		if m[n] == nil {
			return fmt.Errorf("firewall map %s missing", n)
		}
	}
	return nil
}

func (m Maps) limits() limits {
	return limits{rules: int(m["fw_rules"].MaxEntries() / 2), cands: int(m["fw_cands"].MaxEntries() / 2)}
}

// Active returns the generation packets use.
func (m Maps) Active() (uint32, error) {
	var gen uint32
	if err := m["fw_active"].Lookup(uint32(0), &gen); err != nil {
		return 0, fmt.Errorf("read fw_active: %w", err)
	}
	return gen & 1, nil
}

// Install makes rs the rule set packets see, without reloading the
// program: it fills the generation no packet uses (after clearing what an
// earlier rule set left there), then flips fw_active, one 4-byte array
// write. It returns once no packet can still be using the old generation,
// so the next Install may overwrite it. The returned duration is the whole
// replacement.
func (m Maps) Install(rs *RuleSet) (time.Duration, error) {
	start := time.Now()
	if err := m.Check(); err != nil {
		return 0, err
	}
	c, err := compile(rs, m.limits())
	if err != nil {
		return 0, err
	}
	gen, err := m.Active()
	if err != nil {
		return 0, err
	}
	next := gen ^ 1
	if err := m.clearTries(next); err != nil {
		return 0, err
	}
	if err := m.write(next, c); err != nil {
		return 0, err
	}
	if err := m["fw_active"].Put(uint32(0), next); err != nil {
		return 0, fmt.Errorf("flip fw_active: %w", err)
	}
	waitForPacketsInFlight()
	return time.Since(start), nil
}

// clearTries removes the generation's entries from the four tries.
func (m Maps) clearTries(gen uint32) error {
	for _, name := range []string{"fw_src4", "fw_dst4", "fw_src6", "fw_dst6"} {
		t := m[name]
		key := make([]byte, t.KeySize())
		var stale [][]byte
		it := t.Iterate()
		var discard []byte
		for it.Next(&key, &discard) {
			if binary.NativeEndian.Uint32(key[4:8]) == gen {
				stale = append(stale, append([]byte(nil), key...))
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("iterate %s: %w", name, err)
		}
		for _, k := range stale {
			if err := t.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("clear %s: %w", name, err)
			}
		}
	}
	return nil
}

func (m Maps) write(gen uint32, c *compiled) error {
	lim := m.limits()
	if err := putArray(m["fw_rules"], gen*uint32(lim.rules), c.rules); err != nil {
		return fmt.Errorf("write fw_rules: %w", err)
	}
	if err := putArray(m["fw_cands"], gen*uint32(lim.cands), c.cands); err != nil {
		return fmt.Errorf("write fw_cands: %w", err)
	}
	// The generation's hit counters start from zero.
	zeros := make([]uint64, len(c.rules)*ebpfPossibleCPUs())
	if err := putArray(m["fw_hits"], gen*uint32(lim.rules), zeros); err != nil {
		return fmt.Errorf("reset fw_hits: %w", err)
	}
	for name, entries := range c.tries {
		t := m["fw_"+name]
		for _, e := range entries {
			if err := t.Update(lpmKey(gen, e.prefix), e.class, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("write %s %s: %w", t.String(), e.prefix, err)
			}
		}
	}
	cfg := bpfConfig{DefaultAction: uint32(c.def), NRules: uint32(len(c.rules))}
	if err := m["fw_config"].Put(gen, cfg); err != nil {
		return fmt.Errorf("write fw_config: %w", err)
	}
	return nil
}

// putArray writes values to consecutive keys from base, in batches where
// the kernel has them.
func putArray[T any](m *ebpf.Map, base uint32, values []T) error {
	n := len(values)
	if m.Type() == ebpf.PerCPUArray {
		n = len(values) / ebpfPossibleCPUs()
	}
	if n == 0 {
		return nil
	}
	keys := make([]uint32, n)
	for i := range keys {
		keys[i] = base + uint32(i)
	}
	const batch = 8192
	for i := 0; i < n; i += batch {
		j := min(i+batch, n)
		vals := values[i:j]
		if m.Type() == ebpf.PerCPUArray {
			c := ebpfPossibleCPUs()
			vals = values[i*c : j*c]
		}
		if _, err := m.BatchUpdate(keys[i:j], vals, nil); err != nil {
			return err
		}
	}
	return nil
}

// Hits returns the packets each rule of the current rule set matched.
func (m Maps) Hits() ([]uint64, error) {
	gen, err := m.Active()
	if err != nil {
		return nil, err
	}
	var cfg bpfConfig
	if err := m["fw_config"].Lookup(gen, &cfg); err != nil {
		return nil, fmt.Errorf("read fw_config: %w", err)
	}
	base := gen * uint32(m.limits().rules)
	out := make([]uint64, cfg.NRules)
	for i := range out {
		var per []uint64
		if err := m["fw_hits"].Lookup(base+uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read fw_hits: %w", err)
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out, nil
}

func ebpfPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return 1
	}
	return n
}

func nativeWord(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

func nativeBytes32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// waitForPacketsInFlight returns after an RCU grace period
// (MEMBARRIER_CMD_GLOBAL waits for synchronize_rcu()): XDP and TC programs
// run a packet inside one RCU read-side section, so no packet that read the
// old generation number is still running.
func waitForPacketsInFlight() {
	const membarrierCmdGlobal = 1
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		time.Sleep(100 * time.Millisecond)
	}
}

var _ = netip.Prefix{}

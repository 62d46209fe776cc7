package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
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
	for _, name := range []string{"fw_src4", "fw_dst4"} {
		if err := clearTrie[key4](m[name], gen); err != nil {
			return err
		}
	}
	for _, name := range []string{"fw_src6", "fw_dst6"} {
		if err := clearTrie[key6](m[name], gen); err != nil {
			return err
		}
	}
	return nil
}

type lpmKey interface{ key4 | key6 }

func genOf[K lpmKey](k K) uint32 {
	switch k := any(k).(type) {
	case key4:
		return k.Gen
	case key6:
		return k.Gen
	}
	return 0
}

func clearTrie[K lpmKey](t *ebpf.Map, gen uint32) error {
	keys, err := trieKeys[K](t)
	if err != nil {
		return err
	}
	var stale []K
	for _, k := range keys {
		if genOf(k) == gen {
			stale = append(stale, k)
		}
	}
	for i := 0; i < len(stale); i += batchSize {
		chunk := stale[i:min(i+batchSize, len(stale))]
		if _, err := t.BatchDelete(chunk, nil); err == nil {
			continue
		} else if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("clear %s: %w", t, err)
		}
		for _, k := range chunk {
			if err := t.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("clear %s: %w", t, err)
			}
		}
	}
	return nil
}

// trieKeys reads every key of a trie: in batches where the kernel has
// them (a tenth of the syscalls of walking key by key), else key by key.
func trieKeys[K lpmKey](t *ebpf.Map) ([]K, error) {
	var out []K
	var cursor ebpf.MapBatchCursor
	keys := make([]K, batchSize)
	vals := make([]bpfClass, batchSize)
	for {
		n, err := t.BatchLookup(&cursor, keys, vals, nil)
		out = append(out, keys[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil // the end
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", t, err)
		}
	}
	out = out[:0]
	var k K
	var discard bpfClass
	it := t.Iterate()
	for it.Next(&k, &discard) {
		out = append(out, k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", t, err)
	}
	return out, nil
}

// writeTrie adds the generation's classes to a trie, in batches where the
// kernel has them.
func writeTrie[K lpmKey](t *ebpf.Map, entries []trieEntry, key func(trieEntry) K) error {
	keys := make([]K, len(entries))
	vals := make([]bpfClass, len(entries))
	for i, e := range entries {
		keys[i], vals[i] = key(e), e.class
	}
	for i := 0; i < len(keys); i += batchSize {
		j := min(i+batchSize, len(keys))
		if _, err := t.BatchUpdate(keys[i:j], vals[i:j], nil); err == nil {
			continue
		} else if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("write %s: %w", t, err)
		}
		for x := i; x < j; x++ {
			if err := t.Update(keys[x], vals[x], ebpf.UpdateAny); err != nil {
				return fmt.Errorf("write %s: %w", t, err)
			}
		}
	}
	return nil
}

const batchSize = 8192

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
	for _, name := range []string{"src4", "dst4"} {
		if err := writeTrie(m["fw_"+name], c.tries[name], func(e trieEntry) key4 {
			return key4{Prefixlen: uint32(32 + e.prefix.Bits()), Gen: gen, Addr: e.prefix.Addr().As4()}
		}); err != nil {
			return err
		}
	}
	for _, name := range []string{"src6", "dst6"} {
		if err := writeTrie(m["fw_"+name], c.tries[name], func(e trieEntry) key6 {
			return key6{Prefixlen: uint32(32 + e.prefix.Bits()), Gen: gen, Addr: e.prefix.Addr().As16()}
		}); err != nil {
			return err
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
	for i := 0; i < n; i += batchSize {
		j := min(i+batchSize, n)
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

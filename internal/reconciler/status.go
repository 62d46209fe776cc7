package reconciler

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/chain"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// Status reports every desired attachment as the kernel holds it now.
func (r *Reconciler) Status() (*v1.Status, error) {
	// The committed snapshot and the store: never the lock, so status
	// answers while an apply runs.
	st := r.snapshot.Load()
	records, err := r.cfg.Store.Records()
	if err != nil {
		return nil, err
	}
	observed, hooks, err := r.observe(st.Names())
	if err != nil {
		return nil, err
	}
	out := &v1.Status{BPFStats: r.cfg.Stats.Enabled(), Attachments: []v1.AttachmentStatus{}, Foreign: r.Foreign()}
	for _, a := range st.Spec.Attachments {
		s := v1.AttachmentStatus{
			Name: a.Name, Package: a.Package, Program: a.Program,
			HookType: a.Hook.Type, Hook: a.Hook.String(), Priority: a.PriorityOrDefault(),
			State: v1.StateMissing,
		}
		if rec := records[a.Name]; rec != nil {
			s.Digest, s.Repository, s.Program = rec.Package.Digest, rec.Package.Repository, rec.Program
			s.Trust = rec.Package.Trust
			for _, sg := range rec.Package.Signers {
				s.Signers = append(s.Signers, v1.Signer{Role: sg.Role, Key: sg.Key, KeyID: sg.KeyID})
			}
			s.LoadedAt, s.UpdatedAt = rec.LoadedAt, rec.UpdatedAt
			s.Params = map[string]any{}
			for k, v := range rec.ConstParams {
				s.Params[k] = v
			}
			for k, v := range rec.MapParams {
				s.Params[k] = v
			}
		}
		if o := observed[a.Name]; o != nil {
			fillObserved(&s, o, out.BPFStats)
		}
		if r.cfg.Companions != nil {
			s.Companion = r.cfg.Companions(a.Name)
		}
		if rec := records[a.Name]; rec != nil && rec.Chain != nil {
			h := hooks[bpffs.HookID(rec.Chain.Hook)]
			fillChain(&s, rec, observed, h, recordedOrder(records, rec.Chain.Hook))
			r.chainRuns(&s, rec)
			hookRuns(&s, h, out.BPFStats)
		}
		interfaceMissing(&s, a.Hook)
		out.Attachments = append(out.Attachments, s)
	}
	sort.Slice(out.Attachments, func(i, j int) bool { return out.Attachments[i].Name < out.Attachments[j].Name })
	return out, nil
}

func fillObserved(s *v1.AttachmentStatus, o *observer.Attachment, statsOn bool) {
	s.ProgramID, s.LinkID = uint32(o.ProgramID), uint32(o.LinkID)
	s.Problem = o.Problem
	s.Maps = map[string]uint32{}
	for n, id := range o.Maps {
		s.Maps[n] = uint32(id)
	}
	switch {
	case o.Healthy():
		s.State = v1.StateAttached
	case o.ProgramID != 0:
		s.State = v1.StateDetached
	}
	if o.ProgramID == 0 {
		return
	}
	prog, err := ebpf.NewProgramFromID(o.ProgramID)
	if err != nil {
		return
	}
	defer prog.Close()
	if stats, err := prog.Stats(); err == nil && statsOn {
		runs, ns := stats.RunCount, uint64(stats.Runtime)
		s.RunCount, s.RunTimeNs = &runs, &ns
	}
}

// fillChain reports a chain member: its place in the order the kernel
// runs, and the hook's link.
func fillChain(s *v1.AttachmentStatus, rec *store.Record, observed map[string]*observer.Attachment, h *observer.Hook, recorded []string) {
	hookType := rec.Attachment.Hook.Type
	c := &v1.ChainStatus{Position: rec.Chain.Index + 1, Priority: rec.Chain.Priority, Mode: rec.Chain.Mode, ModeReason: rec.Chain.ModeReason}
	if rec.Chain.Fused {
		c.Mode = desired.ChainModeFused
	}
	for _, v := range rec.Chain.ProceedOn {
		c.ProceedOn = append(c.ProceedOn, desired.VerdictName(hookType, v))
	}
	s.Chain = c
	s.Priority = rec.Chain.Priority
	s.LinkID = 0
	s.State = v1.StateMissing
	if o := observed[rec.Name]; o != nil {
		c.NextProgramID = uint32(o.NextProgramID)
	}
	if h == nil || h.LinkID == 0 {
		s.Problem = "the hook's link is not pinned"
		return
	}
	s.LinkID = uint32(h.LinkID)
	order := observer.ChainOrder(h.ProgramID, observed, recorded)
	c.Length = len(order)
	running := false
	for i, n := range order {
		if n == rec.Name {
			running = true
			c.Position = i + 1
		}
	}
	switch {
	case !running:
		s.State, s.Problem = v1.StateDetached, fmt.Sprintf("not in the chain the kernel runs %v", order)
	case !h.Attached:
		s.State, s.Problem = v1.StateDetached, "the hook's link was detached"
	default:
		s.State, s.Problem = v1.StateAttached, ""
	}
}

// recordedOrder lists the members recorded on a hook, in order.
func recordedOrder(records map[string]*store.Record, hookKey string) []string {
	var rs []*store.Record
	for _, r := range records {
		if r.Chain != nil && r.Chain.Hook == hookKey {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Chain.Index < rs[j].Chain.Index })
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// chainRuns reports a chain member's runs from its own counter. The
// kernel's statistics cannot: they skip tail-called programs, and the first
// member's run time includes every member after it (a fused chain is one
// program to the kernel).
//
// A member alone on its hook is the one case the kernel counts exactly.
func (r *Reconciler) chainRuns(s *v1.AttachmentStatus, rec *store.Record) {
	if s.Chain != nil && s.Chain.Length == 1 {
		return
	}
	s.RunCount, s.RunTimeNs = nil, nil
	if !rec.Chain.CountRuns {
		return
	}
	m, err := ebpf.LoadPinnedMap(r.cfg.Layout.Map(rec.Name, chain.RunsMap), nil)
	if err != nil {
		return
	}
	defer m.Close()
	var per []uint64
	if err := m.Lookup(uint32(0), &per); err != nil {
		return
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	s.RunCount = &n
}

// hookRuns reports on a chain member the kernel's statistics of the
// program its hook runs: the whole chain's runs and time, whose ratio is
// the chain's cost per packet.
func hookRuns(s *v1.AttachmentStatus, h *observer.Hook, statsOn bool) {
	if !statsOn || h == nil || h.ProgramID == 0 || s.Chain == nil {
		return
	}
	prog, err := ebpf.NewProgramFromID(h.ProgramID)
	if err != nil {
		return
	}
	defer prog.Close()
	if st, err := prog.Stats(); err == nil {
		runs, ns := st.RunCount, uint64(st.Runtime)
		s.Chain.HookRunCount, s.Chain.HookRunTimeNs = &runs, &ns
	}
}

// ErrUnknownMap is returned for a map the attachment does not have.
var ErrUnknownMap = errors.New("no such map")

// Maps lists the pinned maps of an attachment.
func (r *Reconciler) Maps(attachment string) (*v1.MapList, error) {
	if err := r.known(attachment); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(r.cfg.Layout.MapsDir(attachment))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	out := &v1.MapList{Attachment: attachment, Maps: []v1.MapInfo{}}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".") {
			continue
		}
		m, err := ebpf.LoadPinnedMap(r.cfg.Layout.Map(attachment, e.Name()), nil)
		if err != nil {
			continue
		}
		out.Maps = append(out.Maps, mapInfo(e.Name(), m))
		m.Close()
	}
	return out, nil
}

func (r *Reconciler) known(attachment string) error {
	if r.snapshot.Load().Attachment(attachment) == nil {
		return fmt.Errorf("%w: %q", ErrUnknownAttachment, attachment)
	}
	return nil
}

func mapInfo(name string, m *ebpf.Map) v1.MapInfo {
	mi := v1.MapInfo{Name: name, Type: m.Type().String(), KeySize: m.KeySize(), ValueSize: m.ValueSize(), MaxEntries: m.MaxEntries()}
	if info, err := m.Info(); err == nil {
		id, _ := info.ID()
		mi.ID = uint32(id)
	}
	return mi
}

// maxDumpEntries caps one page of a map dump so one request cannot
// return a huge map; larger maps are read page by page (v1.MapQuery.After).
const maxDumpEntries = 10000

// ErrBadMapQuery is a map query that cannot be served (a key of the
// wrong size).
var ErrBadMapQuery = errors.New("bad map query")

// DumpMap returns one page of the entries of one map of an attachment, in
// key order: those after q.After (or only q.Key), without zero values if
// q.NonZero, at most q.Limit (default and cap maxDumpEntries). Next is set
// when more entries follow.
func (r *Reconciler) DumpMap(attachment, name string, q v1.MapQuery) (*v1.MapDump, error) {
	if err := r.known(attachment); err != nil {
		return nil, err
	}
	if strings.ContainsAny(name, "/.") {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMap, name)
	}
	m, err := ebpf.LoadPinnedMap(r.cfg.Layout.Map(attachment, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("%w: attachment %q has no map %q", ErrUnknownMap, attachment, name)
	}
	defer m.Close()
	dump := &v1.MapDump{Attachment: attachment, Map: mapInfo(name, m), Entries: []v1.MapEntry{}}
	limit := q.Limit
	if limit <= 0 || limit > maxDumpEntries {
		limit = maxDumpEntries
	}
	keys, err := dumpKeys(m, q)
	if err != nil {
		return nil, fmt.Errorf("read map %s: %w", name, err)
	}
	for i, k := range keys {
		if len(dump.Entries) == limit {
			dump.Next, dump.Truncated = hex.EncodeToString(keys[i-1]), true
			break
		}
		e, err := entry(m, k)
		if err != nil {
			continue // deleted while we read
		}
		if q.NonZero && zeroEntry(e) {
			continue
		}
		dump.Entries = append(dump.Entries, e)
	}
	return dump, nil
}

// dumpKeys returns the keys a query asks for, sorted: q.Key alone, or
// every key after q.After.
func dumpKeys(m *ebpf.Map, q v1.MapQuery) ([][]byte, error) {
	size := int(m.KeySize())
	parse := func(field, s string) ([]byte, error) {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != size {
			return nil, fmt.Errorf("%w: %s %q is not %d bytes of hex", ErrBadMapQuery, field, s, size)
		}
		return b, nil
	}
	if q.Key != "" {
		k, err := parse("key", q.Key)
		if err != nil {
			return nil, err
		}
		return [][]byte{k}, nil
	}
	var after []byte
	if q.After != "" {
		var err error
		if after, err = parse("after", q.After); err != nil {
			return nil, err
		}
	}
	var keys [][]byte
	key := make([]byte, size)
	// NextKey walks keys only: no values copied, per-CPU or not. The walk
	// is bounded by the map's capacity (a hash map being written can
	// restart from its first key).
	var cur any
	for n := 0; n <= int(m.MaxEntries()); n++ {
		if err := m.NextKey(cur, key); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			return nil, err
		}
		k := bytes.Clone(key)
		if after == nil || keyLess(after, k) {
			keys = append(keys, k)
		}
		cur = k
	}
	sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
	return keys, nil
}

// zeroEntry says whether an entry's value (every CPU's) is all zero.
func zeroEntry(e v1.MapEntry) bool {
	vals := e.PerCPU
	if len(vals) == 0 {
		vals = []string{e.Value}
	}
	for _, v := range vals {
		if strings.Trim(v, "0") != "" {
			return false
		}
	}
	return true
}

func entry(m *ebpf.Map, key []byte) (v1.MapEntry, error) {
	e := v1.MapEntry{Key: hex.EncodeToString(key), KeyUint: asUint(key)}
	if !perCPU(m.Type()) {
		var val []byte
		if err := m.Lookup(key, &val); err != nil {
			return e, err
		}
		e.Value, e.ValueUint = hex.EncodeToString(val), asUint(val)
		return e, nil
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return e, err
	}
	vals := make([][]byte, ncpu)
	if err := m.Lookup(key, vals); err != nil {
		return e, err
	}
	var sum uint64
	summable := true
	for _, v := range vals {
		e.PerCPU = append(e.PerCPU, hex.EncodeToString(v))
		if n := asUint(v); n != nil {
			sum += *n
		} else {
			summable = false
		}
	}
	if summable {
		e.ValueUint = &sum
	}
	return e, nil
}

func perCPU(t ebpf.MapType) bool {
	switch t {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash, ebpf.PerCPUCGroupStorage:
		return true
	}
	return false
}

func asUint(b []byte) *uint64 {
	var n uint64
	switch len(b) {
	case 1:
		n = uint64(b[0])
	case 2:
		n = uint64(binary.NativeEndian.Uint16(b))
	case 4:
		n = uint64(binary.NativeEndian.Uint32(b))
	case 8:
		n = binary.NativeEndian.Uint64(b)
	default:
		return nil
	}
	return &n
}

// keyLess orders integer keys numerically and others bytewise.
func keyLess(a, b []byte) bool {
	if x, y := asUint(a), asUint(b); x != nil && y != nil {
		return *x < *y
	}
	return bytes.Compare(a, b) < 0
}

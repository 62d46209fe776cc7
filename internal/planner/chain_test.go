package planner

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// chainWorld is a two-member XDP chain (a, then b) as desired, with what
// was recorded and what the kernel holds.
type chainWorld struct {
	members  []*Resolved
	records  map[string]*store.Record
	observed map[string]*observer.Attachment
	hook     *observer.Hook
}

func newChainWorld() *chainWorld {
	w := &chainWorld{records: map[string]*store.Record{}, observed: map[string]*observer.Attachment{}}
	pkg := &repository.Package{Manifest: &manifest.Manifest{Name: "p", Version: "1.0.0"}, Digest: "sha256:1"}
	hook := desired.Hook{Type: "xdp", Interface: "veth0"}
	for i, name := range []string{"a", "b"} {
		w.members = append(w.members, &Resolved{
			Attachment: desired.Attachment{Name: name, Hook: hook},
			Package:    pkg,
			Program:    &manifest.Program{Name: "prog"},
			Chain:      &ChainConfig{Priority: i + 1, ProceedOn: []int32{2}, Mode: manifest.ChainRewrite},
		})
	}
	return w
}

// running records the chain as applied and running, fused or with tail
// calls (member i's program ID 10+i, or 10 for all when fused).
func (w *chainWorld) running(fused bool, refused string) {
	key := w.members[0].Attachment.Hook.Key()
	w.hook = &observer.Hook{ID: bpffs.HookID(key), LinkID: 1, ProgramID: 10, Attached: true}
	for i, r := range w.members {
		id := uint32(10 + i)
		if fused {
			id = 10
		}
		name := r.Attachment.Name
		w.records[name] = &store.Record{
			Name: name, Attachment: r.Attachment, Program: "prog",
			Package:   store.PackageRef{Name: "p", Version: "1.0.0", Digest: r.Package.Digest},
			ProgramID: id,
			Chain: &store.ChainMember{
				Hook: key, Index: i, Priority: i + 1, ProceedOn: []int32{2}, Mode: manifest.ChainRewrite,
				Fused: fused, FuseRefused: refused, XDPMode: "native",
			},
		}
		o := &observer.Attachment{Name: name, HasPins: true, ProgramID: 10, HasNext: !fused}
		if !fused {
			o.ProgramID = ebpf.ProgramID(10 + i)
			if i+1 < len(w.members) {
				o.NextProgramID = ebpf.ProgramID(10 + i + 1)
			}
		}
		w.observed[name] = o
	}
}

func (w *chainWorld) plan(t *testing.T) *ChainPlan {
	t.Helper()
	plans, _ := planChains(w.members, w.records, w.observed, map[string]*observer.Hook{bpffs.HookID(w.members[0].Attachment.Hook.Key()): w.hook})
	if len(plans) != 1 {
		t.Fatalf("%d chain plans, want 1", len(plans))
	}
	return plans[0]
}

func TestChainModeChoice(t *testing.T) {
	t.Run("new chain fuses", func(t *testing.T) {
		cp := newChainWorld().plan(t)
		if !cp.Fused || cp.Kind != ChainSwitch || cp.Fresh != 2 || !cp.NewLink || cp.ModeReason != "" {
			t.Fatalf("plan %+v, want a new fused chain", cp)
		}
	})
	t.Run("hook asks for tail calls", func(t *testing.T) {
		w := newChainWorld()
		w.members[1].Chain.HookMode = desired.ChainModeTailCall
		if cp := w.plan(t); cp.Fused || !strings.Contains(cp.ModeReason, "chainMode: tailcall") {
			t.Fatalf("fused %v, reason %q", cp.Fused, cp.ModeReason)
		}
	})
	t.Run("member cannot be fused", func(t *testing.T) {
		w := newChainWorld()
		w.members[1].Chain.NoFuse = "it chains itself"
		if cp := w.plan(t); cp.Fused || cp.ModeReason != "b cannot be fused: it chains itself" {
			t.Fatalf("fused %v, reason %q", cp.Fused, cp.ModeReason)
		}
	})
	t.Run("running fused chain is kept", func(t *testing.T) {
		w := newChainWorld()
		w.running(true, "")
		if cp := w.plan(t); !cp.Fused || cp.Kind != ChainKeep {
			t.Fatalf("plan %s (%s), fused %v; want keep", cp.Kind, cp.Reason, cp.Fused)
		}
	})
	t.Run("a changed member rebuilds the whole fused chain", func(t *testing.T) {
		w := newChainWorld()
		w.running(true, "")
		w.members[1].Chain.ProceedOn = []int32{1, 2}
		if cp := w.plan(t); !cp.Fused || cp.Kind != ChainSwitch || cp.Fresh != 2 || cp.NewLink {
			t.Fatalf("plan %+v; want a new fused program switched in by link update", cp)
		}
	})
	t.Run("running tail-call chain becomes fused", func(t *testing.T) {
		w := newChainWorld()
		w.running(false, "")
		cp := w.plan(t)
		if !cp.Fused || cp.Kind != ChainSwitch || cp.Fresh != 2 || cp.NewLink || cp.Reason != "tail calls → fused" {
			t.Fatalf("plan %s %q fused %v fresh %d new link %v", cp.Kind, cp.Reason, cp.Fused, cp.Fresh, cp.NewLink)
		}
	})
	t.Run("fused chain switches to tail calls", func(t *testing.T) {
		w := newChainWorld()
		w.running(true, "")
		for _, r := range w.members {
			r.Chain.HookMode = desired.ChainModeTailCall
		}
		cp := w.plan(t)
		if cp.Fused || cp.Kind != ChainSwitch || cp.Fresh != 2 || cp.NewLink || cp.Reason != "fused → tail calls" {
			t.Fatalf("plan %s %q fused %v fresh %d new link %v", cp.Kind, cp.Reason, cp.Fused, cp.Fresh, cp.NewLink)
		}
	})
	t.Run("a refusal sticks while the chain stays the same", func(t *testing.T) {
		w := newChainWorld()
		w.running(false, "stack too deep")
		cp := w.plan(t)
		if cp.Fused || cp.Kind != ChainKeep || cp.FuseRefused != "stack too deep" || !strings.Contains(cp.ModeReason, "stack too deep") {
			t.Fatalf("plan %s fused %v refused %q reason %q; want the tail-call chain kept", cp.Kind, cp.Fused, cp.FuseRefused, cp.ModeReason)
		}
		// A change tries fused again.
		w.members[0].Chain.Priority = 0
		w.members[0].Chain.ProceedOn = []int32{2, 3}
		if cp := w.plan(t); !cp.Fused {
			t.Fatalf("a changed chain is not tried fused again: %q", cp.ModeReason)
		}
	})
	t.Run("fused on demand ignores an earlier refusal", func(t *testing.T) {
		w := newChainWorld()
		w.running(false, "stack too deep")
		w.members[0].Chain.HookMode = desired.ChainModeFused
		if cp := w.plan(t); !cp.Fused || !cp.ForceFused {
			t.Fatalf("fused %v forced %v", cp.Fused, cp.ForceFused)
		}
	})
}

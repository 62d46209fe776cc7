package e2e

import (
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

func TestPortFilterDropsListedPortsOnly(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})

	res := apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001, 7003)))
	if k := actionKinds(res)["filter"]; k != "create" {
		t.Fatalf("first apply: action %q, want create", k)
	}
	for port, want := range map[int]int{7001: 0, 7002: 50, 7003: 0} {
		if got := p.Delivered(t, port, 50, 300*time.Millisecond); got != want {
			t.Errorf("port %d: %d of 50 datagrams delivered, want %d", port, got, want)
		}
	}

	st := status(t, d)["filter"]
	if st.State != "attached" || st.ProgramID == 0 || st.LinkID == 0 {
		t.Fatalf("status: %+v", st)
	}
	if kernel := xdpProgID(t, p.NsB, p.IfB); kernel != st.ProgramID {
		t.Fatalf("kernel runs XDP program %d on %s, status says %d", kernel, p.IfB, st.ProgramID)
	}

	dump, err := d.Client.DumpMap(ctx(t), "filter", "drops")
	if err != nil {
		t.Fatal(err)
	}
	drops := map[uint64]uint64{}
	for _, e := range dump.Entries {
		drops[*e.KeyUint] = *e.ValueUint
	}
	if drops[7001] != 50 || drops[7003] != 50 || len(drops) != 2 {
		t.Fatalf("drops map = %v, want 50 each for 7001 and 7003", drops)
	}

	// Re-applying the same document changes nothing.
	res = apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7003, 7001)))
	if res.Changed || actionKinds(res)["filter"] != "keep" {
		t.Fatalf("re-apply changed something: %+v", res)
	}
	again := status(t, d)["filter"]
	if again.ProgramID != st.ProgramID || again.LinkID != st.LinkID {
		t.Fatalf("re-apply reloaded: program %d→%d, link %d→%d", st.ProgramID, again.ProgramID, st.LinkID, again.LinkID)
	}
}

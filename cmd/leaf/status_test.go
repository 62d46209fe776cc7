package main

import (
	"strings"
	"testing"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// leaf status lists the programs others attached to leaf's hooks after
// leaf's own, saying where each runs and what secure mode does with it.
func TestStatusListsForeignPrograms(t *testing.T) {
	var out strings.Builder
	printStatus(&out, &v1.Status{
		Attachments: []v1.AttachmentStatus{{Name: "count", Package: "pktcount@1.0.0", Program: "count_tc", Hook: "tc/ingress eth0", State: v1.StateAttached}},
		Foreign: []v1.ForeignProgram{
			{Hook: "tc/ingress eth0", ProgramID: 41, LinkID: 7, Name: "cilium_tc", RunsBefore: true},
			{Hook: "tc/ingress eth0", ProgramID: 42, Name: "stray", Secure: true},
		},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 7 || lines[3] != "not leaf's, on its hooks:" {
		t.Fatalf("status:\n%s", out.String())
	}
	for i, want := range [][]string{{"41", "7", "cilium_tc", "before leaf's chain", "off: stays"}, {"42", "0", "stray", "after leaf's chain", "on: removed"}} {
		for _, w := range want {
			if !strings.Contains(lines[5+i], w) {
				t.Errorf("foreign line %q lacks %q", lines[5+i], w)
			}
		}
	}
}

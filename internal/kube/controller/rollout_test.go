package controller

import (
	"slices"
	"testing"
	"time"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/desired"
)

// TestStepStagesBatches walks a rollout over five nodes: one canary, then
// batches of two, each after the soak; it completes and records the
// stable generation. A timeout of a batch rolls back.
func TestStepStagesBatches(t *testing.T) {
	p := &kv1.LeafPolicy{Spec: kv1.PolicySpec{
		Rollout:     &kv1.RolloutStrategy{Canary: 1, BatchSize: 2, SoakSeconds: 5, TimeoutSeconds: 60},
		Attachments: []desired.Attachment{{Name: "a"}},
	}}
	p.Generation = 4
	nodes := []nodeView{{name: "n1"}, {name: "n2"}, {name: "n3"}, {name: "n4"}, {name: "n5"}}
	now := time.Unix(1000, 0)
	// converge marks the updated nodes as running generation 4.
	converge := func(r *kv1.RolloutStatus) {
		for i := range nodes {
			if slices.Contains(r.UpdatedNodes, nodes[i].name) {
				nodes[i].generation, nodes[i].converged = 4, true
			}
		}
	}
	advance := func(d time.Duration) *kv1.RolloutStatus {
		now = now.Add(d)
		p.Status.Rollout = step(p, nodes, now)
		return p.Status.Rollout
	}
	r := advance(0)
	if r.Phase != kv1.RolloutProgressing || !slices.Equal(r.UpdatedNodes, []string{"n1"}) {
		t.Fatalf("start: %+v", r)
	}
	if r = advance(10 * time.Second); len(r.UpdatedNodes) != 1 || r.ConvergedSince != nil {
		t.Fatalf("canary not converged, yet the rollout moved: %+v", r)
	}
	converge(r)
	advance(time.Second) // converged: the soak starts
	if r = advance(3 * time.Second); len(r.UpdatedNodes) != 1 {
		t.Fatalf("moved before the 5 s soak: %+v", r)
	}
	r = advance(3 * time.Second)
	if !slices.Equal(r.UpdatedNodes, []string{"n1", "n2", "n3"}) || r.Batch != 2 {
		t.Fatalf("after the soak, want the batch n2 n3: %+v", r)
	}
	converge(r)
	advance(time.Second)
	r = advance(6 * time.Second)
	if !slices.Equal(r.UpdatedNodes, []string{"n1", "n2", "n3", "n4", "n5"}) {
		t.Fatalf("third batch: %+v", r)
	}
	converge(r)
	advance(time.Second)
	r = advance(6 * time.Second)
	if r.Phase != kv1.RolloutComplete || r.StableGeneration != 4 || len(r.StableAttachments) != 1 || r.UpdatedNodes != nil {
		t.Fatalf("want complete with generation 4 stable: %+v", r)
	}

	// Generation 5: the canary never converges; after the timeout the
	// rollout is rolled back and the stable generation stays 4.
	p.Generation = 5
	r = advance(time.Second)
	if r.Phase != kv1.RolloutProgressing || r.Generation != 5 || !slices.Equal(r.UpdatedNodes, []string{"n1"}) {
		t.Fatalf("generation 5 start: %+v", r)
	}
	r = advance(61 * time.Second)
	if r.Phase != kv1.RolloutRolledBack || r.StableGeneration != 4 || r.UpdatedNodes != nil {
		t.Fatalf("want a rollback after the timeout: %+v", r)
	}
}

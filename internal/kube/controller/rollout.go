package controller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
)

// Rollout defaults (RolloutStrategy's zero values).
const (
	defaultCanary  = 1
	defaultBatch   = 1
	defaultSoak    = 10 * time.Second
	defaultTimeout = 2 * time.Minute
)

// nodeView is what the controller knows of one selected node about one
// policy, from its LeafNode.
type nodeView struct {
	name string
	// generation the node reports running for the policy, and the error
	// if it could not apply it.
	generation int64
	err        string
	converged  bool
}

// step advances a policy's rollout by one decision, given the selected
// nodes (sorted by name) and the time. It returns the new rollout status;
// the agents read it to know which generation each node runs.
func step(p *kv1.LeafPolicy, nodes []nodeView, now time.Time) *kv1.RolloutStatus {
	s := p.Spec.Rollout
	r := clone(p.Status.Rollout)
	t := metav1.NewTime(now)
	switch {
	case r == nil:
		// First rollout: nothing stable to fall back to.
		r = &kv1.RolloutStatus{}
		start(r, p.Generation, nodes, s, t)
		return r
	case r.Generation != p.Generation:
		// A new generation: start over from the last stable one (a
		// rollout in progress is abandoned for the newer change).
		start(r, p.Generation, nodes, s, t)
		return r
	case r.Phase != kv1.RolloutProgressing:
		return r
	}
	updated := map[string]bool{}
	for _, n := range r.UpdatedNodes {
		updated[n] = true
	}
	allConverged := true
	for _, n := range nodes {
		if !updated[n.name] {
			continue
		}
		if n.err != "" && n.generation == p.Generation {
			rollback(r, fmt.Sprintf("node %s failed generation %d: %s", n.name, p.Generation, n.err))
			return r
		}
		if n.generation != p.Generation || !n.converged {
			allConverged = false
		}
	}
	if !allConverged {
		r.ConvergedSince = nil
		if r.BatchStarted != nil && now.Sub(r.BatchStarted.Time) > seconds(s.TimeoutSeconds, defaultTimeout) {
			rollback(r, fmt.Sprintf("batch %d did not converge within %v", r.Batch, seconds(s.TimeoutSeconds, defaultTimeout)))
		}
		return r
	}
	if r.ConvergedSince == nil {
		r.ConvergedSince = &t
		return r
	}
	wait := seconds(s.SoakSeconds, defaultSoak) + time.Duration(s.PauseSeconds)*time.Second
	if now.Sub(r.ConvergedSince.Time) < wait {
		return r
	}
	next := pending(nodes, updated, count(s.BatchSize, defaultBatch))
	if len(next) == 0 {
		complete(r, p)
		return r
	}
	r.UpdatedNodes = append(r.UpdatedNodes, next...)
	r.Batch++
	r.BatchStarted, r.ConvergedSince = &t, nil
	r.Message = fmt.Sprintf("batch %d: %s", r.Batch, strings.Join(next, ", "))
	return r
}

// start begins rolling out generation gen: the canaries first.
func start(r *kv1.RolloutStatus, gen int64, nodes []nodeView, s *kv1.RolloutStrategy, t metav1.Time) {
	r.Phase, r.Generation, r.Batch = kv1.RolloutProgressing, gen, 1
	r.UpdatedNodes = pending(nodes, nil, count(s.Canary, defaultCanary))
	r.BatchStarted, r.ConvergedSince = &t, nil
	r.Message = "canaries: " + strings.Join(r.UpdatedNodes, ", ")
}

// complete makes the rolled-out generation the stable one.
func complete(r *kv1.RolloutStatus, p *kv1.LeafPolicy) {
	r.Phase = kv1.RolloutComplete
	r.StableGeneration, r.StableAttachments = p.Generation, slices.Clone(p.Spec.Attachments)
	r.UpdatedNodes, r.BatchStarted, r.ConvergedSince = nil, nil, nil
	r.Message = fmt.Sprintf("generation %d runs on every selected node", p.Generation)
}

// rollback returns every node to the stable generation: agents run the
// stable attachments of a RolledBack rollout.
func rollback(r *kv1.RolloutStatus, why string) {
	r.Phase = kv1.RolloutRolledBack
	r.UpdatedNodes, r.BatchStarted, r.ConvergedSince = nil, nil, nil
	r.Message = why
}

// pending returns up to n selected nodes not yet updated, in name order.
func pending(nodes []nodeView, updated map[string]bool, n int) []string {
	var out []string
	for _, nv := range nodes {
		if len(out) == n {
			break
		}
		if !updated[nv.name] {
			out = append(out, nv.name)
		}
	}
	return out
}

func count(v int32, def int) int {
	if v <= 0 {
		return def
	}
	return int(v)
}

func seconds(v int32, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return time.Duration(v) * time.Second
}

func clone(r *kv1.RolloutStatus) *kv1.RolloutStatus {
	if r == nil {
		return nil
	}
	c := *r
	c.UpdatedNodes = slices.Clone(r.UpdatedNodes)
	return &c
}

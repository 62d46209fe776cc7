package agent

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// status builds the LeafNode status from what the host runs and the last
// merge. Conditions keep their transition times from the status last
// written while their status holds.
func (a *Agent) status(hs *v1.Status, syncErr error) kv1.NodeStatus {
	st := kv1.NodeStatus{Conditions: slices.Clone(a.written.Conditions)}
	owner := map[string]string{}
	if m := a.merged; m != nil {
		st.Policies, st.Conflicts, owner = m.Policies, m.Conflicts, m.Owner
	}
	var notAttached []string
	for _, at := range hs.Attachments {
		st.Attachments = append(st.Attachments, kv1.AttachmentStatus{
			Name: at.Name, Policy: owner[at.Name], Package: at.Package, Digest: at.Digest,
			Hook: at.HookType + ":" + at.Hook, State: at.State, Trust: at.Trust,
			ProgramID: at.ProgramID, LinkID: at.LinkID, Problem: at.Problem,
		})
		if at.State != "attached" {
			notAttached = append(notAttached, at.Name+" "+at.State)
		}
	}
	st.AttachmentCount = int32(len(st.Attachments))
	var refused []string
	for _, p := range st.Policies {
		if p.Error != "" {
			refused = append(refused, p.Name+": "+p.Error)
		}
	}
	for _, c := range st.Conflicts {
		refused = append(refused, fmt.Sprintf("%s clashes with %s: %s", c.Policy, c.With, c.Message))
	}

	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: bound(msg), ObservedGeneration: a.generation})
	}
	switch {
	case syncErr != nil:
		set(kv1.ConditionReady, false, "NotSynced", syncErr.Error())
	case a.applyErr != nil:
		set(kv1.ConditionReady, false, "ApplyFailed", a.applyErr.Error())
	default:
		set(kv1.ConditionReady, true, "Applied", "policies applied")
	}
	switch {
	case a.applyErr != nil || syncErr != nil:
		set(kv1.ConditionConverged, false, "NotApplied", "the selected policies are not applied")
	case len(notAttached) > 0:
		set(kv1.ConditionConverged, false, "NotAttached", strings.Join(notAttached, "; "))
	default:
		set(kv1.ConditionConverged, true, "Attached", fmt.Sprintf("%d attachments attached", len(st.Attachments)))
	}
	if len(notAttached) > 0 {
		set(kv1.ConditionDrifted, true, "NotAttached", strings.Join(notAttached, "; "))
	} else {
		set(kv1.ConditionDrifted, false, "AsDeclared", "the kernel runs the desired state")
	}
	if len(refused) > 0 {
		set(kv1.ConditionDegraded, true, "PolicyRefused", strings.Join(refused, "; "))
	} else {
		set(kv1.ConditionDegraded, false, "AllAccepted", "every selected policy is applied")
	}
	return st
}

// bound keeps condition messages within what the API server accepts.
func bound(s string) string {
	const max = 4096
	if len(s) > max {
		return s[:max-3] + "..."
	}
	return s
}

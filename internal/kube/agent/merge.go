package agent

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/desired"
)

// AnnotationPolicies, on the host's desired state, lists the policy
// generations it was merged from ("name=generation,...").
const AnnotationPolicies = "leaf.dev/policies"

// Merged is the desired state of one node merged from the policies that
// select it.
type Merged struct {
	State *desired.State
	// Policies are the policies taken, with the generation taken.
	Policies []kv1.AppliedPolicy
	// Owner maps an attachment name to its policy.
	Owner map[string]string
	// Conflicts are the policies refused for a clash.
	Conflicts []kv1.Conflict
	// Taken are the attachments taken from each policy.
	Taken map[string]Taken
}

// Taken is what a merge took from one policy.
type Taken struct {
	Generation  int64
	Attachments []desired.Attachment
}

// MergeOptions shape a merge.
type MergeOptions struct {
	// Node is the node's name, looked up in rollouts' updated nodes.
	Node string
	// Labels are the node's labels, which policies select on.
	Labels map[string]string
	// DefaultNetns is given to xdp and tc hooks that name no netns.
	DefaultNetns string
	// Failed are policies that failed to apply here, with the error:
	// their Fallback (what ran before) is taken instead, or nothing.
	Failed   map[string]string
	Fallback map[string]Taken
}

// Merge selects the policies whose selector matches the node and merges
// their attachments into one desired state. A policy that clashes with
// one taken before it (an attachment of the same name, or the same XDP/TC
// hook at the same priority, which leaves their order undecided) is
// refused as a whole and reported: policies are taken oldest first, so a
// new policy never displaces one that runs.
func Merge(policies []kv1.LeafPolicy, o MergeOptions) (*Merged, error) {
	sorted := slices.Clone(policies)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i].CreationTimestamp, sorted[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return sorted[i].Name < sorted[j].Name
	})
	m := &Merged{State: desired.Empty(), Owner: map[string]string{}, Taken: map[string]Taken{}}
	m.State.Metadata.Name = "kubernetes"
	byName := map[string]string{}    // attachment name → policy
	byOrder := map[string][]string{} // hook key + priority → policies
	for i := range sorted {
		p := &sorted[i]
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.NodeSelector)
		if err != nil {
			// The API server validates selectors; a bad one selects nothing.
			m.Policies = append(m.Policies, kv1.AppliedPolicy{Name: p.Name, Generation: p.Generation, Error: "nodeSelector: " + err.Error()})
			continue
		}
		if !sel.Matches(labels.Set(o.Labels)) {
			continue
		}
		gen, atts := Generation(p, o.Node)
		atts = withNetns(atts, o.DefaultNetns)
		applied := kv1.AppliedPolicy{Name: p.Name, Generation: gen}
		if reason, ok := o.Failed[p.Name]; ok {
			// Report the generation that failed; run the one before.
			applied.Error = reason
			prev, ok := o.Fallback[p.Name]
			if !ok || prev.Generation == gen {
				m.Policies = append(m.Policies, applied)
				continue
			}
			atts = prev.Attachments
		}
		if c := clash(p.Name, atts, byName, byOrder); c != nil {
			m.Conflicts = append(m.Conflicts, *c)
			continue
		}
		for _, a := range atts {
			byName[a.Name] = p.Name
			if k, ok := orderKey(&a); ok {
				byOrder[k] = append(byOrder[k], p.Name)
			}
			m.Owner[a.Name] = p.Name
			m.State.Spec.Attachments = append(m.State.Spec.Attachments, a)
		}
		m.Policies = append(m.Policies, applied)
		if applied.Error == "" {
			m.Taken[p.Name] = Taken{Generation: gen, Attachments: atts}
		} else if prev, ok := o.Fallback[p.Name]; ok {
			m.Taken[p.Name] = prev
		}
	}
	sort.Slice(m.State.Spec.Attachments, func(i, j int) bool {
		return m.State.Spec.Attachments[i].Name < m.State.Spec.Attachments[j].Name
	})
	sort.Slice(m.Policies, func(i, j int) bool { return m.Policies[i].Name < m.Policies[j].Name })
	var tags []string
	for _, ap := range m.Policies {
		if ap.Error == "" {
			tags = append(tags, ap.Name+"="+strconv.FormatInt(ap.Generation, 10))
		}
	}
	m.State.Metadata.Annotations = map[string]string{AnnotationPolicies: strings.Join(tags, ",")}
	return m, nil
}

// Generation returns which generation of the policy this node runs, and
// its attachments. Without a rollout strategy, the current one. With one,
// the current one only once the controller has let this node take it;
// until then the stable one the controller recorded (none before the
// first rollout completes).
func Generation(p *kv1.LeafPolicy, node string) (int64, []desired.Attachment) {
	if p.Spec.Rollout == nil {
		return p.Generation, p.Spec.Attachments
	}
	r := p.Status.Rollout
	if r == nil {
		return 0, nil
	}
	if r.Generation == p.Generation {
		switch {
		case r.Phase == kv1.RolloutComplete,
			r.Phase == kv1.RolloutProgressing && slices.Contains(r.UpdatedNodes, node):
			return p.Generation, p.Spec.Attachments
		}
	}
	return r.StableGeneration, r.StableAttachments
}

// withNetns copies the attachments, giving xdp and tc hooks without a
// netns the default one.
func withNetns(atts []desired.Attachment, netns string) []desired.Attachment {
	out := slices.Clone(atts)
	for i := range out {
		if out[i].Hook.Chained() && out[i].Hook.Netns == "" {
			out[i].Hook.Netns = netns
		}
	}
	return out
}

// clash returns the conflict of a policy's attachments with those taken.
func clash(policy string, atts []desired.Attachment, byName map[string]string, byOrder map[string][]string) *kv1.Conflict {
	for i := range atts {
		a := &atts[i]
		if other, ok := byName[a.Name]; ok {
			return &kv1.Conflict{Policy: policy, With: other, Message: fmt.Sprintf("both declare attachment %q", a.Name)}
		}
		if k, ok := orderKey(a); ok {
			for _, other := range byOrder[k] {
				if other != policy {
					return &kv1.Conflict{Policy: policy, With: other, Message: fmt.Sprintf("attachment %q: both put a program on hook %s at %s, so their order is undecided", a.Name, a.Hook.String(), priorityText(a))}
				}
			}
		}
	}
	return nil
}

// orderKey is the hook and priority of a chained attachment: two policies
// with the same key leave their order to the attachment names.
func orderKey(a *desired.Attachment) (string, bool) {
	if !a.Hook.Chained() {
		return "", false
	}
	return a.Hook.Key() + "#" + priorityText(a), true
}

func priorityText(a *desired.Attachment) string {
	if a.Priority == nil {
		return "the default priority"
	}
	return "priority " + strconv.Itoa(*a.Priority)
}

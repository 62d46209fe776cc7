// Package v1alpha1 holds leaf's Kubernetes resources (group leaf.dev):
// LeafPolicy, which says what runs on the nodes it selects, and LeafNode,
// which says what leafd on one node runs. The CRDs in deploy/kubernetes
// are generated from these types (cmd/leaf-crdgen; make generate).
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/leaf-ebpf/leaf/internal/desired"
)

// Group and Version of leaf's resources.
const (
	Group   = "leaf.dev"
	Version = "v1alpha1"
)

// Resources as the API server names them.
var (
	PolicyResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "leafpolicies"}
	NodeResource   = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "leafnodes"}
)

// Kinds.
const (
	PolicyKind = "LeafPolicy"
	NodeKind   = "LeafNode"
)

// MaxAttachments bounds one policy's attachments (as the desired-state
// document of one host is bounded).
const MaxAttachments = 64

// LeafPolicy (cluster-scoped) puts attachments on the nodes its selector
// matches. Several policies may select one node; leafd there merges them
// into the node's desired state.
type LeafPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PolicySpec   `json:"spec"`
	Status            PolicyStatus `json:"status,omitzero"`
}

// PolicySpec is what a policy wants.
type PolicySpec struct {
	// NodeSelector selects nodes (and registered non-node hosts) by
	// label; empty selects every one.
	NodeSelector metav1.LabelSelector `json:"nodeSelector,omitzero"`
	// Attachments are entries of leaf's desired-state document
	// (docs/desired-state.md): package, hook, priority, parameters.
	Attachments []desired.Attachment `json:"attachments"`
	// Rollout stages a change of this policy over the selected nodes;
	// without it every node takes a change at once.
	Rollout *RolloutStrategy `json:"rollout,omitempty"`
}

// RolloutStrategy stages a policy change: canary nodes first, then
// batches, each proceeding only when the nodes before it report
// Converged for SoakSeconds. A failure stops the rollout and returns the
// nodes already changed to the previous generation.
type RolloutStrategy struct {
	// Canary is how many nodes take the change first (default 1).
	Canary int32 `json:"canary,omitempty"`
	// BatchSize is how many nodes take it at once after the canaries
	// (default 1).
	BatchSize int32 `json:"batchSize,omitempty"`
	// SoakSeconds is how long changed nodes must stay Converged before
	// the next batch (default 10).
	SoakSeconds int32 `json:"soakSeconds,omitempty"`
	// PauseSeconds waits between batches, after the soak (default 0).
	PauseSeconds int32 `json:"pauseSeconds,omitempty"`
	// TimeoutSeconds is how long a batch may take to converge before the
	// rollout fails (default 120).
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// PolicyStatus is written by the controller.
type PolicyStatus struct {
	// ObservedGeneration is the generation the controller last acted on.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// SelectedNodes, ConvergedNodes and ConflictedNodes count nodes.
	SelectedNodes   int32 `json:"selectedNodes"`
	ConvergedNodes  int32 `json:"convergedNodes"`
	ConflictedNodes int32 `json:"conflictedNodes"`
	// Conditions: Conflicted (a node refused this policy because it
	// clashes with another) and RolledOut.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Rollout is the state of a staged rollout.
	Rollout *RolloutStatus `json:"rollout,omitempty"`
}

// Rollout phases.
const (
	RolloutProgressing = "Progressing"
	RolloutComplete    = "Complete"
	RolloutRolledBack  = "RolledBack"
)

// RolloutStatus says which nodes run which generation of the policy.
// Agents read it: a selected node not in UpdatedNodes runs Stable.
type RolloutStatus struct {
	// Phase is Progressing, Complete or RolledBack.
	Phase string `json:"phase"`
	// Generation is the generation being rolled out.
	Generation int64 `json:"generation"`
	// StableGeneration is the last generation that completed a rollout;
	// StableAttachments are its attachments.
	StableGeneration  int64                `json:"stableGeneration,omitempty"`
	StableAttachments []desired.Attachment `json:"stableAttachments,omitempty"`
	// UpdatedNodes run Generation; every other selected node runs the
	// stable attachments.
	UpdatedNodes []string `json:"updatedNodes,omitempty"`
	// Batch counts the batches started (the canaries are batch 1).
	Batch int32 `json:"batch,omitempty"`
	// BatchStarted is when the current batch was admitted;
	// ConvergedSince is when all its nodes were first seen Converged.
	BatchStarted   *metav1.Time `json:"batchStarted,omitempty"`
	ConvergedSince *metav1.Time `json:"convergedSince,omitempty"`
	// Message says why the rollout stopped, when it did.
	Message string `json:"message,omitempty"`
}

// LeafNode (cluster-scoped, named after the node) is what leafd on that
// node runs. Its labels select policies for hosts that are not
// Kubernetes nodes; on nodes, the Node's labels do.
type LeafNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NodeSpec   `json:"spec,omitzero"`
	Status            NodeStatus `json:"status,omitzero"`
}

// NodeSpec says where the node's labels come from.
type NodeSpec struct {
	// External is true for a host that is not a Kubernetes node: its
	// LeafNode's own labels select policies.
	External bool `json:"external,omitempty"`
}

// Condition types of a LeafNode.
const (
	// Ready: leafd is connected and has applied the policies it saw.
	ConditionReady = "Ready"
	// Converged: every attachment of the selected policies is attached
	// as declared.
	ConditionConverged = "Converged"
	// Drifted: the kernel differs from the desired state (an attachment
	// missing or detached).
	ConditionDrifted = "Drifted"
	// Degraded: a policy could not be applied (refused, conflict).
	ConditionDegraded = "Degraded"
)

// NodeStatus is written by leafd on the node, by server-side apply.
type NodeStatus struct {
	// Policies are the policy generations this node runs.
	Policies []AppliedPolicy `json:"policies,omitempty"`
	// Attachments is what the kernel runs.
	Attachments []AttachmentStatus `json:"attachments,omitempty"`
	// AttachmentCount is len(Attachments), for a printer column.
	AttachmentCount int32 `json:"attachmentCount"`
	// Conflicts are policies this node refused because they clash.
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Conditions: Ready, Converged, Drifted, Degraded.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AppliedPolicy is one policy as this node runs it.
type AppliedPolicy struct {
	Name string `json:"name"`
	// Generation is the policy generation whose attachments run here
	// (the stable one while a rollout has not reached this node).
	Generation int64 `json:"generation"`
	// Error is why the node could not apply it, if it could not.
	Error string `json:"error,omitempty"`
}

// AttachmentStatus is one attachment as the kernel holds it.
type AttachmentStatus struct {
	Name    string `json:"name"`
	Policy  string `json:"policy,omitempty"`
	Package string `json:"package"`
	Digest  string `json:"digest,omitempty"`
	Hook    string `json:"hook"`
	// State is attached, detached or missing.
	State string `json:"state"`
	// Trust is what leafd verified: signed, unsigned-allowed or builtin.
	Trust     string `json:"trust,omitempty"`
	ProgramID uint32 `json:"programID,omitempty"`
	LinkID    uint32 `json:"linkID,omitempty"`
	Problem   string `json:"problem,omitempty"`
}

// Conflict is a clash between two policies on this node.
type Conflict struct {
	// Policy is refused here because it clashes with With, which was
	// created first and keeps running.
	Policy string `json:"policy"`
	With   string `json:"with"`
	// Message says what clashes (attachment name, hook and priority).
	Message string `json:"message"`
}

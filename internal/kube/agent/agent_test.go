package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/kube/kubetest"
)

var deployDir = filepath.Join("..", "..", "..", "deploy", "kubernetes")

// cluster starts an API server with leaf's CRDs, RBAC and admission
// policy installed.
func cluster(t *testing.T) (*kubetest.Cluster, kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	c := kubetest.Start(t)
	c.Apply(t, kubetest.LeafManifests(deployDir)...)
	k, d := kubetest.Clients(t, c.Admin)
	waitAdmissionPolicy(t, c)
	return c, k, d
}

// waitAdmissionPolicy waits until the API server enforces the admission
// policy (it loads new policies asynchronously): a dry-run create of
// another host's LeafNode is refused.
func waitAdmissionPolicy(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	user, groups := agentIdentity("probe")
	_, d := kubetest.Clients(t, c.Config(t, user, groups...))
	other := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "leaf.dev/v1alpha1", "kind": "LeafNode", "metadata": map[string]any{"name": "not-probe"}}}
	kubetest.Eventually(t, time.Minute, func(ctx context.Context) error {
		_, err := d.Resource(kv1.NodeResource).Create(ctx, other, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) {
			return fmt.Errorf("admission policy not enforced yet: %v", err)
		}
		return nil
	})
}

// agentIdentity is how a host outside the cluster authenticates.
func agentIdentity(node string) (string, []string) {
	return "leaf:node:" + node, []string{"leaf:agents"}
}

func createNode(t *testing.T, k kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := k.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createPolicy(t testing.TB, d dynamic.Interface, doc string) {
	t.Helper()
	kubetest.Create(t, d, kv1.PolicyResource, doc)
}

func startAgent(t *testing.T, c *kubetest.Cluster, cfg Config) {
	t.Helper()
	user, groups := agentIdentity(cfg.Node)
	cfg.Rest = c.Config(t, user, groups...)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.StatusInterval = time.Second
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func leafNode(ctx context.Context, d dynamic.Interface, name string) (*kv1.LeafNode, error) {
	u, err := d.Resource(kv1.NodeResource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var n kv1.LeafNode
	return &n, FromUnstructured(u, &n)
}

func condition(n *kv1.LeafNode, typ string) metav1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

func attachmentNames(r *Recorder) []string {
	st, _ := r.State()
	if st == nil {
		return nil
	}
	var out []string
	for _, a := range st.Spec.Attachments {
		out = append(out, a.Name)
	}
	return out
}

// TestAgentSelectsByLabelsAndReportsConflicts runs two agents (a node and
// an external host) with the kernel replaced by a recorder: a policy
// lands on the nodes its selector matches, relabelling moves it, a later
// policy that clashes is refused and reported, and each LeafNode says so.
func TestAgentSelectsByLabelsAndReportsConflicts(t *testing.T) {
	c, k, d := cluster(t)
	createNode(t, k, "n1", map[string]string{"role": "edge"})
	r1, r2 := &Recorder{}, &Recorder{}
	startAgent(t, c, Config{Node: "n1", Host: r1})
	startAgent(t, c, Config{Node: "vm1", External: true, Labels: map[string]string{"role": "core"}, Host: r2})

	createPolicy(t, d, `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: edge}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  attachments:
  - {name: filter, package: portfilter@1.0.0, hook: {type: xdp, interface: leaf0}, params: {ports: [7001]}}
`)
	kubetest.Eventually(t, time.Minute, func(ctx context.Context) error {
		if got := attachmentNames(r1); !slices.Equal(got, []string{"filter"}) {
			return fmt.Errorf("n1 runs %v, want [filter]", got)
		}
		n, err := leafNode(ctx, d, "n1")
		if err != nil {
			return err
		}
		if condition(n, kv1.ConditionConverged) != metav1.ConditionTrue || n.Status.AttachmentCount != 1 || n.Status.Attachments[0].Policy != "edge" {
			return fmt.Errorf("n1 status: %+v", n.Status)
		}
		return nil
	})
	if got := attachmentNames(r2); len(got) != 0 {
		t.Fatalf("vm1 (role=core) runs %v, want nothing", got)
	}
	vm, err := leafNode(context.Background(), d, "vm1")
	if err != nil || vm.Labels["role"] != "core" || !vm.Spec.External {
		t.Fatalf("external host's LeafNode: %+v, %v", vm, err)
	}

	// Relabel: the policy leaves n1.
	n1, err := k.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n1.Labels["role"] = "core"
	if _, err := k.CoreV1().Nodes().Update(context.Background(), n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, time.Minute, func(context.Context) error {
		if got := attachmentNames(r1); len(got) != 0 {
			return fmt.Errorf("n1 relabelled core still runs %v", got)
		}
		return nil
	})

	// Two policies for role=core that declare the same attachment: the
	// older one runs, the later one is refused and reported.
	createPolicy(t, d, `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: core-a}
spec:
  nodeSelector: {matchLabels: {role: core}}
  attachments:
  - {name: count, package: pktcount@1.0.0, priority: 10, hook: {type: xdp, interface: leaf0}}
`)
	time.Sleep(1100 * time.Millisecond) // creation timestamps have second resolution
	createPolicy(t, d, `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: core-b}
spec:
  nodeSelector: {matchLabels: {role: core}}
  attachments:
  - {name: other, package: pktcount@1.0.0, priority: 10, hook: {type: xdp, interface: leaf0}}
`)
	for node, rec := range map[string]*Recorder{"n1": r1, "vm1": r2} {
		kubetest.Eventually(t, time.Minute, func(ctx context.Context) error {
			if got := attachmentNames(rec); !slices.Equal(got, []string{"count"}) {
				return fmt.Errorf("%s runs %v, want [count]", node, got)
			}
			n, err := leafNode(ctx, d, node)
			if err != nil {
				return err
			}
			if len(n.Status.Conflicts) != 1 || n.Status.Conflicts[0].Policy != "core-b" || n.Status.Conflicts[0].With != "core-a" ||
				!strings.Contains(n.Status.Conflicts[0].Message, "order is undecided") || condition(n, kv1.ConditionDegraded) != metav1.ConditionTrue {
				return fmt.Errorf("%s status: conflicts %+v, conditions %+v", node, n.Status.Conflicts, n.Status.Conditions)
			}
			return nil
		})
	}
}

// TestAgentWritesOnlyItsOwnLeafNode checks the admission policy: an
// agent's identity may write its own LeafNode and gets 403 for another's.
func TestAgentWritesOnlyItsOwnLeafNode(t *testing.T) {
	c, _, d := cluster(t)
	startAgent(t, c, Config{Node: "vm1", External: true, Labels: map[string]string{"a": "b"}, Host: &Recorder{}})
	startAgent(t, c, Config{Node: "vm2", External: true, Labels: map[string]string{"a": "b"}, Host: &Recorder{}})
	kubetest.Eventually(t, time.Minute, func(ctx context.Context) error {
		for _, n := range []string{"vm1", "vm2"} {
			if ln, err := leafNode(ctx, d, n); err != nil || condition(ln, kv1.ConditionReady) != metav1.ConditionTrue {
				return fmt.Errorf("%s: %v %v", n, ln, err)
			}
		}
		return nil
	})
	user, groups := agentIdentity("vm1")
	_, agent := kubetest.Clients(t, c.Config(t, user, groups...))
	ctx := context.Background()
	status := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "leaf.dev/v1alpha1", "kind": "LeafNode", "metadata": map[string]any{"name": "vm2"},
		"status": map[string]any{"attachmentCount": 99},
	}}
	_, err := agent.Resource(kv1.NodeResource).ApplyStatus(ctx, "vm2", status, metav1.ApplyOptions{FieldManager: "intruder", Force: true})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may only write its own LeafNode") {
		t.Fatalf("vm1 writes vm2's status: err = %v, want 403 from the admission policy", err)
	}
	if err := agent.Resource(kv1.NodeResource).Delete(ctx, "vm2", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("vm1 deletes vm2's LeafNode: err = %v, want 403", err)
	}
	status.SetName("vm1")
	if _, err := agent.Resource(kv1.NodeResource).ApplyStatus(ctx, "vm1", status, metav1.ApplyOptions{FieldManager: "test", Force: true}); err != nil {
		t.Fatalf("vm1 writes its own status: %v", err)
	}
	// Policies are read-only to agents (RBAC).
	err = agent.Resource(kv1.PolicyResource).Delete(ctx, "any", metav1.DeleteOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("agent deletes a policy: err = %v, want 403", err)
	}
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/kube/agent"
	"github.com/leaf-ebpf/leaf/internal/kube/controller"
	"github.com/leaf-ebpf/leaf/internal/kube/kubetest"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// kubeNode is one "node" of the fleet on this machine: its own network
// namespaces (the program goes on leaf0, B's end of a veth pair), bpffs,
// state directory, Node object and leafd agent.
type kubeNode struct {
	name string
	pair *testenv.Pair
	d    *testenv.Daemon
}

// startKubeNode creates the node's world and starts leafd --kubernetes
// with the node's own client certificate.
func startKubeNode(t *testing.T, c *kubetest.Cluster, k kubernetes.Interface, name string, labels map[string]string) *kubeNode {
	t.Helper()
	p := testenv.NewPair(t)
	// The same interface name on every node, so one policy fits them all.
	for _, args := range [][]string{{"link", "set", p.IfB, "down"}, {"link", "set", p.IfB, "name", "leaf0"}, {"link", "set", "leaf0", "up"}} {
		if out, err := exec.Command("ip", append([]string{"-n", p.NsB}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	p.IfB = "leaf0"
	if _, err := k.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc := c.Kubeconfig(t, "leaf:node:"+name, "leaf:agents")
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--kubernetes", "--kubeconfig", kc,
		"--kubernetes-node-name", name, "--kubernetes-netns", p.NsB}})
	return &kubeNode{name: name, pair: p, d: d}
}

// drops reports whether the node drops UDP to port (and still passes
// 7999, so a broken veth is not mistaken for a filter).
func (n *kubeNode) drops(t *testing.T, port int) (bool, error) {
	got := n.pair.Delivered(t, port, 20, 200*time.Millisecond)
	if n.pair.Delivered(t, 7999, 5, 200*time.Millisecond) != 5 {
		return false, fmt.Errorf("%s: control port 7999 blocked", n.name)
	}
	switch got {
	case 0:
		return true, nil
	case 20:
		return false, nil
	}
	return false, fmt.Errorf("%s: %d of 20 datagrams to %d delivered", n.name, got, port)
}

// waitDrops waits until each node drops (or passes) port as wanted.
func waitDrops(t *testing.T, port int, want map[*kubeNode]bool) {
	t.Helper()
	kubetest.Eventually(t, 2*time.Minute, func(context.Context) error {
		for n, w := range want {
			got, err := n.drops(t, port)
			if err != nil {
				return err
			}
			if got != w {
				return fmt.Errorf("%s drops port %d: %v, want %v", n.name, port, got, w)
			}
		}
		return nil
	})
}

func createPolicy(t *testing.T, d dynamic.Interface, doc string) {
	t.Helper()
	kubetest.Create(t, d, kv1.PolicyResource, doc)
}

func patchPolicy(t *testing.T, d dynamic.Interface, name, patch string) {
	t.Helper()
	if _, err := d.Resource(kv1.PolicyResource).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch policy %s: %v", name, err)
	}
}

func relabel(t *testing.T, k kubernetes.Interface, node, role string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"role":%q}}}`, role)
	if _, err := k.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetesFleet runs three leafd agents against a real API server,
// each its own node with real XDP programs, and shows with traffic that a
// policy lands exactly on the selected nodes, that relabelling moves it,
// that local applies are refused, and that an API server outage (with an
// agent restarted during it) changes nothing until the API server is back
// and a change reaches the nodes.
func TestKubernetesFleet(t *testing.T) {
	testenv.RequireKernel(t)
	c := kubetest.Start(t)
	c.Apply(t, kubetest.LeafManifests(filepath.Join("..", "deploy", "kubernetes"))...)
	k, d := kubetest.Clients(t, c.Admin)
	n1 := startKubeNode(t, c, k, "n1", map[string]string{"role": "edge"})
	n2 := startKubeNode(t, c, k, "n2", map[string]string{"role": "edge"})
	n3 := startKubeNode(t, c, k, "n3", map[string]string{"role": "core"})

	createPolicy(t, d, `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: block}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  attachments:
  - {name: filter, package: portfilter@1.0.0, hook: {type: xdp, interface: leaf0}, params: {ports: [7001]}}
`)
	waitDrops(t, 7001, map[*kubeNode]bool{n1: true, n2: true, n3: false})
	id := status(t, n1.d)["filter"].ProgramID
	waitLeafNode(t, d, "n1", func(ln kv1.NodeStatus) error {
		if ln.AttachmentCount != 1 || ln.Attachments[0].ProgramID != id || ln.Attachments[0].Policy != "block" {
			return fmt.Errorf("n1's LeafNode does not report program %d of policy block: %+v", id, ln)
		}
		return nil
	})

	if _, err := n1.d.Client.Apply(ctx(t), doc(), false); err == nil || !strings.Contains(err.Error(), "managed by Kubernetes") {
		t.Fatalf("local apply in Kubernetes mode: err = %v, want a refusal", err)
	}

	relabel(t, k, "n2", "core")
	relabel(t, k, "n3", "edge")
	waitDrops(t, 7001, map[*kubeNode]bool{n1: true, n2: false, n3: true})

	// Outage: the API server stops, n1's leafd restarts during it; every
	// node keeps what it runs.
	c.StopAPIServer()
	n1.d.Stop()
	n1.d.Restart()
	time.Sleep(2 * time.Second)
	waitDrops(t, 7001, map[*kubeNode]bool{n1: true, n2: false, n3: true})
	c.StartAPIServer()
	patchPolicy(t, d, "block", `{"spec":{"attachments":[{"name":"filter","package":"portfilter@1.0.0","hook":{"type":"xdp","interface":"leaf0"},"params":{"ports":[7002]}}]}}`)
	waitDrops(t, 7002, map[*kubeNode]bool{n1: true, n2: false, n3: true})
	waitDrops(t, 7001, map[*kubeNode]bool{n1: false, n3: false})
}

// TestKubernetesRolloutRollsBackOnCanary rolls a policy out to two real
// nodes through the controller, then a change that fails on the canary
// (its interface does not exist there): the rollout stops at the canary,
// the canary returns to the previous generation, the other node never
// changes, and the policy status says why.
func TestKubernetesRolloutRollsBackOnCanary(t *testing.T) {
	testenv.RequireKernel(t)
	c := kubetest.Start(t)
	c.Apply(t, kubetest.LeafManifests(filepath.Join("..", "deploy", "kubernetes"))...)
	k, d := kubetest.Clients(t, c.Admin)
	ctrl, err := controller.New(controller.Config{Rest: c.Config(t, "leaf:controller", "leaf:controllers"), Identity: "e2e",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })
	a := startKubeNode(t, c, k, "a", map[string]string{"role": "edge"})
	b := startKubeNode(t, c, k, "b", map[string]string{"role": "edge"})

	createPolicy(t, d, `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: staged}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  rollout: {canary: 1, batchSize: 1, soakSeconds: 1, timeoutSeconds: 60}
  attachments:
  - {name: filter, package: portfilter@1.0.0, hook: {type: xdp, interface: leaf0}, params: {ports: [7005]}}
`)
	waitRollout(t, d, kv1.RolloutComplete, 1)
	waitDrops(t, 7005, map[*kubeNode]bool{a: true, b: true})
	idB := status(t, b.d)["filter"].ProgramID

	patchPolicy(t, d, "staged", `{"spec":{"attachments":[{"name":"filter","package":"portfilter@1.0.0","hook":{"type":"xdp","interface":"missing0"},"params":{"ports":[7006]}}]}}`)
	p := waitRollout(t, d, kv1.RolloutRolledBack, 2)
	if !strings.Contains(p.Status.Rollout.Message, "node a failed generation 2") {
		t.Fatalf("rollback message %q does not name the canary", p.Status.Rollout.Message)
	}
	waitDrops(t, 7005, map[*kubeNode]bool{a: true, b: true})
	waitDrops(t, 7006, map[*kubeNode]bool{a: false, b: false})
	if got := status(t, b.d)["filter"].ProgramID; got != idB {
		t.Fatalf("node b's program changed (%d → %d) though only the canary took the change", idB, got)
	}
	waitLeafNode(t, d, "a", func(ln kv1.NodeStatus) error {
		if len(ln.Policies) != 1 || ln.Policies[0].Generation != 1 || ln.Policies[0].Error != "" {
			return fmt.Errorf("canary after the rollback runs %+v, want generation 1", ln.Policies)
		}
		return nil
	})
}

func waitRollout(t *testing.T, d dynamic.Interface, phase string, gen int64) *kv1.LeafPolicy {
	t.Helper()
	var p kv1.LeafPolicy
	kubetest.Eventually(t, 2*time.Minute, func(ctx context.Context) error {
		u, err := d.Resource(kv1.PolicyResource).Get(ctx, "staged", metav1.GetOptions{})
		if err != nil {
			return err
		}
		p = kv1.LeafPolicy{}
		if err := agent.FromUnstructured(u, &p); err != nil {
			return err
		}
		if r := p.Status.Rollout; r == nil || r.Phase != phase || r.Generation != gen {
			return fmt.Errorf("rollout %+v, want %s of generation %d", r, phase, gen)
		}
		return nil
	})
	return &p
}

// waitLeafNode waits until the node's LeafNode status passes check.
func waitLeafNode(t *testing.T, d dynamic.Interface, name string, check func(kv1.NodeStatus) error) {
	t.Helper()
	kubetest.Eventually(t, time.Minute, func(ctx context.Context) error {
		u, err := d.Resource(kv1.NodeResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var n kv1.LeafNode
		if err := agent.FromUnstructured(u, &n); err != nil {
			return err
		}
		return check(n.Status)
	})
}

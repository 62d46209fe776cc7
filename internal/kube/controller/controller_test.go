package controller

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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/kube/agent"
	"github.com/leaf-ebpf/leaf/internal/kube/kubetest"
)

var deployDir = filepath.Join("..", "..", "..", "deploy", "kubernetes")

func run(t testing.TB, r interface{ Run(context.Context) error }) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func policy(t *testing.T, ctx context.Context, d dynamic.Interface, name string) *kv1.LeafPolicy {
	t.Helper()
	u, err := d.Resource(kv1.PolicyResource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p kv1.LeafPolicy
	if err := agent.FromUnstructured(u, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func names(r *agent.Recorder) []string {
	st, _ := r.State()
	var out []string
	if st != nil {
		for _, a := range st.Spec.Attachments {
			out = append(out, a.Name)
		}
	}
	return out
}

// TestRolloutCanaryFailureRollsBack runs the controller (with its own
// RBAC identity) and three agents whose kernel is a recorder. A first
// generation rolls out canary first, then in a batch, and completes; a
// second generation that the canary refuses (as a verifier would) stops
// at the canary and rolls back: the canary returns to the first
// generation and the other nodes never see the second; a third, good
// generation completes.
func TestRolloutCanaryFailureRollsBack(t *testing.T) {
	c := kubetest.Start(t)
	c.Apply(t, filepath.Join(deployDir, "crds", "leafpolicies.yaml"), filepath.Join(deployDir, "crds", "leafnodes.yaml"),
		filepath.Join(deployDir, "namespace.yaml"), filepath.Join(deployDir, "rbac.yaml"))
	_, d := kubetest.Clients(t, c.Admin)
	ctrl, err := New(Config{Rest: c.Config(t, "leaf:controller", "leaf:controllers"), Identity: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctrl)
	recs := map[string]*agent.Recorder{}
	for _, h := range []string{"h1", "h2", "h3"} {
		recs[h] = &agent.Recorder{Refuse: map[string]string{}}
		if h == "h1" {
			recs[h].Refuse["bad"] = "program rejected by the verifier"
		}
		a, err := agent.New(agent.Config{Rest: c.Config(t, "leaf:node:"+h, "leaf:agents"), Node: h, External: true,
			Labels: map[string]string{"role": "edge"}, Host: recs[h], Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StatusInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		run(t, a)
	}
	ctx := context.Background()
	doc := `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: staged}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  rollout: {canary: 1, batchSize: 2, soakSeconds: 1, timeoutSeconds: 60}
  attachments:
  - {name: good1, package: portfilter@1.0.0, hook: {type: xdp, interface: leaf0}}
`
	kubetest.Create(t, d, kv1.PolicyResource, doc)
	waitPhase := func(phase string, gen int64) *kv1.LeafPolicy {
		var p *kv1.LeafPolicy
		kubetest.Eventually(t, 2*time.Minute, func(ctx context.Context) error {
			p = policy(t, ctx, d, "staged")
			if r := p.Status.Rollout; r == nil || r.Phase != phase || r.Generation != gen {
				return fmt.Errorf("rollout %+v, want %s of generation %d", r, phase, gen)
			}
			return nil
		})
		return p
	}
	p := waitPhase(kv1.RolloutComplete, 1)
	if p.Status.SelectedNodes != 3 || p.Status.Rollout.StableGeneration != 1 {
		t.Fatalf("status after first rollout: %+v", p.Status)
	}
	kubetest.Eventually(t, time.Minute, func(context.Context) error {
		for h, r := range recs {
			if got := names(r); !slices.Equal(got, []string{"good1"}) {
				return fmt.Errorf("%s runs %v", h, got)
			}
		}
		return nil
	})

	setAttachment := func(name string) {
		patch := fmt.Sprintf(`{"spec":{"attachments":[{"name":%q,"package":"portfilter@1.0.0","hook":{"type":"xdp","interface":"leaf0"}}]}}`, name)
		if _, err := d.Resource(kv1.PolicyResource).Patch(ctx, "staged", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setAttachment("bad")
	p = waitPhase(kv1.RolloutRolledBack, 2)
	if !strings.Contains(p.Status.Rollout.Message, "h1") || !strings.Contains(p.Status.Rollout.Message, "verifier") {
		t.Fatalf("rollback message %q does not name the canary and its error", p.Status.Rollout.Message)
	}
	kubetest.Eventually(t, time.Minute, func(context.Context) error {
		for h, r := range recs {
			if got := names(r); !slices.Equal(got, []string{"good1"}) {
				return fmt.Errorf("%s runs %v after the rollback, want the stable [good1]", h, got)
			}
		}
		return nil
	})
	for _, h := range []string{"h2", "h3"} {
		if recs[h].Seen("bad") {
			t.Errorf("%s applied the failed generation; only the canary should have", h)
		}
	}

	setAttachment("good3")
	waitPhase(kv1.RolloutComplete, 3)
	kubetest.Eventually(t, time.Minute, func(context.Context) error {
		for h, r := range recs {
			if got := names(r); !slices.Equal(got, []string{"good3"}) {
				return fmt.Errorf("%s runs %v", h, got)
			}
		}
		return nil
	})

	// A later policy declaring the same attachment: refused on every
	// node, and both policies say so.
	kubetest.Create(t, d, kv1.PolicyResource, `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: clash}
spec:
  attachments:
  - {name: good3, package: portfilter@1.0.0, hook: {type: xdp, interface: leaf1}}
`)
	for _, name := range []string{"staged", "clash"} {
		kubetest.Eventually(t, time.Minute, func(ctx context.Context) error {
			p := policy(t, ctx, d, name)
			if p.Status.ConflictedNodes != 3 || !conditionTrue(p.Status.Conditions, ConditionConflicted) {
				return fmt.Errorf("%s: %d conflicted nodes, conditions %+v", name, p.Status.ConflictedNodes, p.Status.Conditions)
			}
			return nil
		})
	}
}

// TestLeaseOneHolder takes the controller lease with two identities:
// only one holds it at a time, and the second takes it once the first
// releases it.
func TestLeaseOneHolder(t *testing.T) {
	c := kubetest.Start(t)
	c.Apply(t, filepath.Join(deployDir, "namespace.yaml"), filepath.Join(deployDir, "rbac.yaml"))
	_, d := kubetest.Clients(t, c.Config(t, "leaf:controller", "leaf:controllers"))
	r := d.Resource(leaseResource).Namespace("leaf-system")
	a, b := &lease{r: r, name: "leaf-controller", id: "a"}, &lease{r: r, name: "leaf-controller", id: "b"}
	ctx := context.Background()
	now := time.Now()
	if ok, err := a.tryHold(ctx, now); !ok || err != nil {
		t.Fatalf("a takes a free lease: %v %v", ok, err)
	}
	if ok, err := b.tryHold(ctx, now.Add(time.Second)); ok || err != nil {
		t.Fatalf("b takes a's valid lease: %v %v", ok, err)
	}
	if ok, err := a.tryHold(ctx, now.Add(2*time.Second)); !ok || err != nil {
		t.Fatalf("a renews: %v %v", ok, err)
	}
	if ok, err := b.tryHold(ctx, now.Add(2*time.Second+leaseDuration+time.Second)); !ok || err != nil {
		t.Fatalf("b takes the lease a stopped renewing: %v %v", ok, err)
	}
	if ok, _ := a.tryHold(ctx, now.Add(2*time.Second+leaseDuration+2*time.Second)); ok {
		t.Fatal("a took the lease back while b's is valid")
	}
	b.release(ctx)
	if ok, err := a.tryHold(ctx, now.Add(2*time.Second+leaseDuration+3*time.Second)); !ok || err != nil {
		t.Fatalf("a takes the released lease: %v %v", ok, err)
	}
}

func conditionTrue(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

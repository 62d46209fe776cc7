// Package agent is leafd's Kubernetes mode: it watches LeafPolicy objects,
// takes those whose selector matches this node's labels, merges them into
// the host's desired state, applies it through the same entry point as
// `leaf apply` (PUT /v1/state), and reports what runs in this node's
// LeafNode status by server-side apply, only when it changed.
//
// The API server is only where the desired state comes from: when it is
// unreachable the host keeps running the last applied state (leafd's
// store holds it across restarts), and the informers catch up when it
// returns.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/desired"
)

// Host is what the agent drives: leafd's reconciler, or a recorder in
// the scale bench.
type Host interface {
	// Apply admits and reconciles a whole desired state, as PUT
	// /v1/state does.
	Apply(ctx context.Context, st *desired.State, dryRun bool) (*v1.ApplyResult, error)
	// Status reports what the kernel runs.
	Status() (*v1.Status, error)
}

// NodesResource is Kubernetes' Node resource.
var NodesResource = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}

// FieldManager is the server-side apply manager of what leafd writes.
const FieldManager = "leafd"

// Config configures an Agent.
type Config struct {
	Rest *rest.Config
	// Node is this host's name: its Node object (when not External) and
	// its LeafNode.
	Node string
	// External marks a host that is not a Kubernetes node: Labels, put on
	// its LeafNode, are what policies select.
	External bool
	Labels   map[string]string
	// DefaultNetns is given to xdp and tc hooks that name no netns.
	DefaultNetns string
	Host         Host
	Logger       *slog.Logger
	// StatusInterval is how often the status is recomputed besides
	// policy and node events (drift shows there); default 10 s.
	StatusInterval time.Duration
}

// RestConfig loads a kubeconfig file, or the in-cluster configuration
// when the path is empty.
func RestConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes config (give a kubeconfig outside a pod): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}

// Agent is one node's link to the API server.
type Agent struct {
	cfg      Config
	dyn      dynamic.Interface
	policies cache.SharedIndexInformer
	nodes    cache.SharedIndexInformer // nil for external hosts
	wake     chan struct{}

	mu         sync.Mutex
	registered bool
	generation int64  // the LeafNode's, for conditions' observedGeneration
	lastMerge  string // the merged state last tried, as JSON
	merged     *Merged
	lastGood   map[string]Taken // per policy, what last applied here
	applyErr   error
	lastStatus string // the status last written, as JSON
	written    kv1.NodeStatus
}

// New makes an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Node == "" {
		return nil, errors.New("kubernetes: node name is empty")
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = 10 * time.Second
	}
	rc := rest.CopyConfig(cfg.Rest)
	rc.UserAgent = "leafd/" + cfg.Node
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, dyn: dyn, wake: make(chan struct{}, 1)}
	a.policies = NewInformer(dyn, kv1.PolicyResource, nil)
	a.policies.AddEventHandler(a.handler())
	if !cfg.External {
		// Only this host's Node. The dynamic client, not the typed
		// clientset: that one would add every API group to leafd's binary.
		only := func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", cfg.Node).String()
		}
		a.nodes = NewInformer(dyn, NodesResource, only)
		a.nodes.AddEventHandler(a.handler())
	}
	return a, nil
}

func (a *Agent) handler() cache.ResourceEventHandler {
	poke := func() {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
}

// Run watches and converges until ctx ends. It never returns early on
// API errors: the informers retry, and what runs keeps running.
func (a *Agent) Run(ctx context.Context) error {
	log := a.cfg.Logger
	go a.policies.Run(ctx.Done())
	synced := []cache.InformerSynced{a.policies.HasSynced}
	if a.nodes != nil {
		go a.nodes.Run(ctx.Done())
		synced = append(synced, a.nodes.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	log.Info("kubernetes: watching policies", "node", a.cfg.Node, "external", a.cfg.External)
	tick := time.NewTicker(a.cfg.StatusInterval)
	defer tick.Stop()
	for {
		if err := a.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("kubernetes: sync", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		case <-tick.C:
		}
	}
}

// Sync converges once: register, merge, apply if the merge changed,
// report status if it changed.
func (a *Agent) Sync(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.register(ctx); err != nil {
		return fmt.Errorf("register LeafNode %s: %w", a.cfg.Node, err)
	}
	nodeLabels, err := a.labels()
	if err != nil {
		return a.report(ctx, err)
	}
	a.converge(ctx, a.policyList(), nodeLabels)
	return a.report(ctx, nil)
}

// labels returns the labels policies select this host by.
func (a *Agent) labels() (map[string]string, error) {
	if a.cfg.External {
		return a.cfg.Labels, nil
	}
	obj, ok, err := a.nodes.GetStore().GetByKey(a.cfg.Node)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no Node named %q: keeping what runs until it exists", a.cfg.Node)
	}
	return obj.(*unstructured.Unstructured).GetLabels(), nil
}

func (a *Agent) policyList() []kv1.LeafPolicy {
	var out []kv1.LeafPolicy
	for _, obj := range a.policies.GetStore().List() {
		var p kv1.LeafPolicy
		if err := FromUnstructured(obj.(*unstructured.Unstructured), &p); err != nil {
			a.cfg.Logger.Warn("kubernetes: unreadable policy", "error", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// converge applies the merged state if it differs from the one last
// tried. A policy whose attachments the host refuses keeps running what
// it ran before (or nothing) and the rest is applied, so one bad policy
// does not hold back the others.
func (a *Agent) converge(ctx context.Context, policies []kv1.LeafPolicy, nodeLabels map[string]string) {
	opts := MergeOptions{Node: a.cfg.Node, Labels: nodeLabels, DefaultNetns: a.cfg.DefaultNetns, Failed: map[string]string{}, Fallback: a.lastGood}
	m, err := Merge(policies, opts)
	if err != nil {
		a.applyErr = err
		return
	}
	key, _ := json.Marshal(m)
	if string(key) == a.lastMerge && a.applyErr == nil {
		return
	}
	for range len(policies) + 1 {
		_, err = a.cfg.Host.Apply(ctx, m.State, false)
		if err == nil {
			break
		}
		failed := failedPolicies(err, m.Owner)
		if len(failed) == 0 {
			break // not one policy's fault (leafd's own failure): retry later
		}
		for _, p := range failed {
			if _, again := opts.Failed[p]; again {
				// What ran before fails too now: run nothing of it.
				opts.Fallback = without(opts.Fallback, p)
				continue
			}
			opts.Failed[p] = err.Error()
		}
		a.cfg.Logger.Warn("kubernetes: policy refused on this node", "policies", failed, "error", err)
		m, _ = Merge(policies, opts)
	}
	a.merged, a.applyErr = m, err
	if err == nil {
		a.lastMerge, a.lastGood = string(key), m.Taken
		a.cfg.Logger.Info("kubernetes: applied policies", "policies", m.State.Metadata.Annotations[AnnotationPolicies], "attachments", len(m.State.Spec.Attachments))
	}
}

func without(m map[string]Taken, key string) map[string]Taken {
	out := make(map[string]Taken, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// failedPolicies names the policies owning the attachments an apply
// error names.
func failedPolicies(err error, owner map[string]string) []string {
	var de desired.Errors
	if !errors.As(err, &de) {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range de {
		if p, ok := owner[e.Attachment]; ok && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// register creates this host's LeafNode (with its labels, for an
// external host) once.
func (a *Agent) register(ctx context.Context) error {
	if a.registered {
		return nil
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kv1.Group + "/" + kv1.Version, "kind": kv1.NodeKind,
		"metadata": map[string]any{"name": a.cfg.Node},
	}}
	if a.cfg.External {
		obj.SetLabels(a.cfg.Labels)
		obj.Object["spec"] = map[string]any{"external": true}
	}
	got, err := a.dyn.Resource(kv1.NodeResource).Apply(ctx, a.cfg.Node, obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return err
	}
	a.registered, a.generation = true, got.GetGeneration()
	return nil
}

// report writes the LeafNode status when it differs from the last one
// written.
func (a *Agent) report(ctx context.Context, syncErr error) error {
	hs, err := a.cfg.Host.Status()
	if err != nil {
		return err
	}
	st := a.status(hs, syncErr)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if string(b) == a.lastStatus {
		return syncErr
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		return err
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kv1.Group + "/" + kv1.Version, "kind": kv1.NodeKind,
		"metadata": map[string]any{"name": a.cfg.Node}, "status": body,
	}}
	_, err = a.dyn.Resource(kv1.NodeResource).ApplyStatus(ctx, a.cfg.Node, obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if apierrors.IsNotFound(err) {
		a.registered = false // deleted behind our back: register again next time
	}
	if err != nil {
		return fmt.Errorf("write LeafNode status: %w", err)
	}
	a.lastStatus, a.written = string(b), st
	return syncErr
}

// FromUnstructured decodes an object the API server sent into a typed one.
func FromUnstructured(u *unstructured.Unstructured, into any) error {
	b, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

// NewInformer watches one resource through the dynamic client
// (dynamicinformer would link every typed informer into leafd).
func NewInformer(dyn dynamic.Interface, gvr schema.GroupVersionResource, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {}
	}
	r := dyn.Resource(gvr)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return r.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return r.Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
}

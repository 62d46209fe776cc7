// Package controller is leafd's --controller: it summarizes on each
// LeafPolicy what the nodes report (selected, converged, conflicted) and
// drives staged rollouts — canary nodes, then batches, each proceeding
// once its nodes stay Converged for the soak time; a failure rolls the
// changed nodes back to the stable generation. It keeps its state on the
// API server (policy status, generations, conditions) and runs only while
// it holds a lease, so several replicas may run.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/kube/agent"
)

// FieldManager is the server-side apply manager of policy status.
const FieldManager = "leaf-controller"

// Condition types of a LeafPolicy.
const (
	ConditionConflicted = "Conflicted"
	ConditionRolledOut  = "RolledOut"
)

// Config configures the controller.
type Config struct {
	Rest *rest.Config
	// Namespace and LeaseName name the leader-election lease.
	Namespace, LeaseName string
	// Identity names this replica in the lease.
	Identity string
	Logger   *slog.Logger
	// Interval is how often rollouts are re-examined besides events
	// (soak and timeouts); default 1 s.
	Interval time.Duration
}

// Controller watches policies, nodes and LeafNodes.
type Controller struct {
	cfg       Config
	dyn       dynamic.Interface
	policies  cache.SharedIndexInformer
	leafNodes cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	wake      chan struct{}
	written   map[string]string // policy → status last written, as JSON
}

// New makes a controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "leaf-system"
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = "leaf-controller"
	}
	rc := rest.CopyConfig(cfg.Rest)
	rc.UserAgent = "leaf-controller"
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, dyn: dyn, wake: make(chan struct{}, 1), written: map[string]string{},
		policies: agent.NewInformer(dyn, kv1.PolicyResource, nil), leafNodes: agent.NewInformer(dyn, kv1.NodeResource, nil),
		nodes: agent.NewInformer(dyn, agent.NodesResource, nil)}
	poke := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(any, any) { c.poke() },
		DeleteFunc: func(any) { c.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{c.policies, c.leafNodes, c.nodes} {
		inf.AddEventHandler(poke)
	}
	return c, nil
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run campaigns for the lease and, while it holds it, drives the
// policies; it returns when ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	for _, inf := range []cache.SharedIndexInformer{c.policies, c.leafNodes, c.nodes} {
		go inf.Run(ctx.Done())
	}
	l := &lease{r: c.dyn.Resource(leaseResource).Namespace(c.cfg.Namespace), name: c.cfg.LeaseName, id: c.cfg.Identity}
	l.runWhileHolding(ctx, c.lead, func() { c.cfg.Logger.Info("controller: lost the lease") })
	return nil
}

// lead runs while this replica holds the lease.
func (c *Controller) lead(ctx context.Context) {
	c.cfg.Logger.Info("controller: leading", "identity", c.cfg.Identity)
	c.written = map[string]string{}
	if !cache.WaitForCacheSync(ctx.Done(), c.policies.HasSynced, c.leafNodes.HasSynced, c.nodes.HasSynced) {
		return
	}
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		c.syncAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-tick.C:
		}
	}
}

// host is one node or external host with the labels policies select on.
type host struct {
	labels labels.Set
	node   *kv1.LeafNode // nil until its agent registers
}

func (c *Controller) hosts() map[string]*host {
	out := map[string]*host{}
	for _, obj := range c.nodes.GetStore().List() {
		n := obj.(*unstructured.Unstructured)
		out[n.GetName()] = &host{labels: n.GetLabels()}
	}
	for _, obj := range c.leafNodes.GetStore().List() {
		var ln kv1.LeafNode
		if err := agent.FromUnstructured(obj.(*unstructured.Unstructured), &ln); err != nil {
			continue
		}
		h := out[ln.Name]
		if h == nil {
			if !ln.Spec.External {
				continue // a LeafNode whose Node is gone
			}
			h = &host{labels: ln.Labels}
			out[ln.Name] = h
		}
		h.node = &ln
	}
	return out
}

func (c *Controller) syncAll(ctx context.Context) {
	hosts := c.hosts()
	for _, obj := range c.policies.GetStore().List() {
		var p kv1.LeafPolicy
		if err := agent.FromUnstructured(obj.(*unstructured.Unstructured), &p); err != nil {
			continue
		}
		if err := c.sync(ctx, &p, hosts, time.Now()); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("controller: policy status", "policy", p.Name, "error", err)
		}
	}
}

// sync computes one policy's status and writes it if it changed.
func (c *Controller) sync(ctx context.Context, p *kv1.LeafPolicy, hosts map[string]*host, now time.Time) error {
	sel, err := metav1.LabelSelectorAsSelector(&p.Spec.NodeSelector)
	if err != nil {
		return err
	}
	var views []nodeView
	var conflicted []string
	st := kv1.PolicyStatus{ObservedGeneration: p.Generation, Conditions: p.Status.Conditions}
	for name, h := range hosts {
		if !sel.Matches(h.labels) {
			continue
		}
		v := view(name, p.Name, h.node)
		views = append(views, v)
		if v.generation == p.Generation && v.err == "" && v.converged {
			st.ConvergedNodes++
		}
		if h.node != nil && conflictsWith(h.node, p.Name) {
			conflicted = append(conflicted, name)
		}
	}
	sort.Slice(views, func(i, j int) bool { return views[i].name < views[j].name })
	sort.Strings(conflicted)
	st.SelectedNodes, st.ConflictedNodes = int32(len(views)), int32(len(conflicted))
	if len(conflicted) > 0 {
		setCondition(&st, ConditionConflicted, true, "ClashesWithAnotherPolicy", "refused on "+strings.Join(conflicted, ", ")+" (see their LeafNode conflicts)", p.Generation)
	} else {
		setCondition(&st, ConditionConflicted, false, "NoClash", "no node reports a clash", p.Generation)
	}
	if p.Spec.Rollout != nil {
		st.Rollout = step(p, views, now)
		r := st.Rollout
		setCondition(&st, ConditionRolledOut, r.Phase == kv1.RolloutComplete, r.Phase, r.Message, p.Generation)
	}
	return c.write(ctx, p.Name, st)
}

// view is what a LeafNode says about one policy.
func view(name, policy string, ln *kv1.LeafNode) nodeView {
	v := nodeView{name: name, generation: -1}
	if ln == nil {
		return v
	}
	for _, ap := range ln.Status.Policies {
		if ap.Name == policy {
			v.generation, v.err = ap.Generation, ap.Error
		}
	}
	for _, cd := range ln.Status.Conditions {
		if cd.Type == kv1.ConditionConverged {
			v.converged = cd.Status == metav1.ConditionTrue
		}
	}
	return v
}

func conflictsWith(ln *kv1.LeafNode, policy string) bool {
	for _, cf := range ln.Status.Conflicts {
		if cf.Policy == policy || cf.With == policy {
			return true
		}
	}
	return false
}

func setCondition(st *kv1.PolicyStatus, t string, ok bool, reason, msg string, gen int64) {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen})
}

// write applies the status when it differs from the one last written.
func (c *Controller) write(ctx context.Context, name string, st kv1.PolicyStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if c.written[name] == string(b) {
		return nil
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		return err
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kv1.Group + "/" + kv1.Version, "kind": kv1.PolicyKind,
		"metadata": map[string]any{"name": name}, "status": body,
	}}
	if _, err := c.dyn.Resource(kv1.PolicyResource).ApplyStatus(ctx, name, obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	c.written[name] = string(b)
	if st.Rollout != nil {
		c.cfg.Logger.Info("controller: rollout", "policy", name, "phase", st.Rollout.Phase, "generation", st.Rollout.Generation, "message", st.Rollout.Message)
	}
	return nil
}

package controller

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// leaseResource is coordination.k8s.io/v1 Lease. The controller takes it
// through the dynamic client: client-go's leaderelection package links
// the whole typed clientset (every API group, ~30 MB) into leafd. The
// protocol is the same: a holder renews renewTime; another may take the
// lease once renewTime + leaseDurationSeconds has passed; the API
// server's resourceVersion check makes each take atomic.
var leaseResource = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// Lease timing, as client-go's defaults.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

const microTime = "2006-01-02T15:04:05.000000Z07:00"

type lease struct {
	r        dynamic.ResourceInterface
	name, id string
}

// tryHold takes or renews the lease; false when another holder's lease
// is still valid or the update lost a race.
func (l *lease) tryHold(ctx context.Context, now time.Time) (bool, error) {
	u, err := l.r.Get(ctx, l.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		u = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
			"metadata": map[string]any{"name": l.name},
			"spec": map[string]any{"holderIdentity": l.id, "leaseDurationSeconds": int64(leaseDuration / time.Second),
				"acquireTime": now.UTC().Format(microTime), "renewTime": now.UTC().Format(microTime), "leaseTransitions": int64(0)},
		}}
		_, err = l.r.Create(ctx, u, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	holder, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity")
	renewed, _, _ := unstructured.NestedString(u.Object, "spec", "renewTime")
	secs, _, _ := unstructured.NestedInt64(u.Object, "spec", "leaseDurationSeconds")
	last, perr := time.Parse(microTime, renewed)
	if holder != l.id && holder != "" && perr == nil && now.Before(last.Add(time.Duration(secs)*time.Second)) {
		return false, nil
	}
	spec := map[string]any{"holderIdentity": l.id, "leaseDurationSeconds": int64(leaseDuration / time.Second),
		"renewTime": now.UTC().Format(microTime)}
	if holder != l.id {
		n, _, _ := unstructured.NestedInt64(u.Object, "spec", "leaseTransitions")
		spec["acquireTime"], spec["leaseTransitions"] = now.UTC().Format(microTime), n+1
	}
	for k, v := range spec {
		if err := unstructured.SetNestedField(u.Object, v, "spec", k); err != nil {
			return false, err
		}
	}
	_, err = l.r.Update(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return false, nil
	}
	return err == nil, err
}

// release gives the lease up so another replica need not wait it out.
func (l *lease) release(ctx context.Context) {
	u, err := l.r.Get(ctx, l.name, metav1.GetOptions{})
	if err != nil {
		return
	}
	if h, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity"); h != l.id {
		return
	}
	unstructured.SetNestedField(u.Object, "", "spec", "holderIdentity")
	l.r.Update(ctx, u, metav1.UpdateOptions{})
}

// runWhileHolding calls lead with a context that ends when the lease is
// lost (not renewed within renewDeadline) or ctx ends; it campaigns again
// after a loss, until ctx ends.
func (l *lease) runWhileHolding(ctx context.Context, lead func(context.Context), lost func()) {
	for ctx.Err() == nil {
		if ok, _ := l.tryHold(ctx, time.Now()); !ok {
			sleep(ctx, retryPeriod)
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); lead(lctx) }()
		renewed := time.Now()
		for lctx.Err() == nil && time.Since(renewed) < renewDeadline {
			sleep(lctx, retryPeriod)
			if ok, _ := l.tryHold(lctx, time.Now()); ok {
				renewed = time.Now()
			}
		}
		cancel()
		<-done
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			l.release(rctx)
			rcancel()
			return
		}
		lost()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

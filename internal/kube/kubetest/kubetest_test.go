package kubetest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestClusterIdentities starts the real API server, checks that the admin
// certificate is in system:masters and that a certificate of another user
// is authenticated as that user and refused by RBAC, then restarts the
// API server and finds the object it stored before.
func TestClusterIdentities(t *testing.T) {
	c := Start(t)
	ctx := context.Background()
	admin, _ := Clients(t, c.Admin)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"role": "edge"}}}
	if _, err := admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin creates a node: %v", err)
	}
	agent, _ := Clients(t, c.Config(t, "system:node:n1", "system:nodes"))
	_, err := agent.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if !errors.IsForbidden(err) {
		t.Fatalf("user without RBAC lists nodes: err = %v, want 403", err)
	}
	c.StopAPIServer()
	if _, err := admin.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); err == nil {
		t.Fatal("API server answered while stopped")
	}
	c.StartAPIServer()
	Eventually(t, time.Minute, func(ctx context.Context) error {
		_, err := admin.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		return err
	})
}

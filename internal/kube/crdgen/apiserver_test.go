package crdgen

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/kube/kubetest"
)

// TestCRDsOnAPIServer installs the committed CRDs in a real API server
// and checks that their schemas and CEL rules accept a good policy and
// refuse bad ones with a message naming the problem.
func TestCRDsOnAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	c.Apply(t, filepath.Join("..", "..", "..", "deploy", "kubernetes", "crds", "leafpolicies.yaml"),
		filepath.Join("..", "..", "..", "deploy", "kubernetes", "crds", "leafnodes.yaml"))
	_, dyn := kubetest.Clients(t, c.Admin)
	policies := dyn.Resource(kv1.PolicyResource)
	create := func(doc string) error {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		_, err := policies.Create(context.Background(), &u, metav1.CreateOptions{})
		return err
	}
	good := `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: good}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  attachments:
  - {name: drop, package: xdp-drop@1.0.0, priority: 10, hook: {type: xdp, interface: eth0}, params: {ports: [53, 80]}}
  rollout: {canary: 1, batchSize: 2, soakSeconds: 5, timeoutSeconds: 60}
`
	if err := create(good); err != nil {
		t.Fatalf("valid policy refused: %v", err)
	}
	got, err := policies.Get(context.Background(), "good", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ports, _, _ := unstructured.NestedSlice(got.Object, "spec", "attachments"); len(ports) != 1 ||
		ports[0].(map[string]any)["params"].(map[string]any)["ports"] == nil {
		t.Fatalf("parameters not kept as given: %v", got.Object["spec"])
	}
	for _, tc := range []struct{ name, spec, want string }{
		{"duplicate", `attachments: [{name: a, package: p@1, hook: {type: xdp, interface: e}}, {name: a, package: p@1, hook: {type: xdp, interface: f}}]`, "attachment names must be unique"},
		{"priority", `attachments: [{name: a, package: p@1, priority: 2000, hook: {type: xdp, interface: e}}]`, "priority"},
		{"no-interface", `attachments: [{name: a, package: p@1, hook: {type: tc}}]`, "xdp and tc hooks need an interface"},
		{"hook-type", `attachments: [{name: a, package: p@1, hook: {type: lsm}}]`, "Unsupported value"},
		{"bad-name", `attachments: [{name: A_B, package: p@1, hook: {type: xdp, interface: e}}]`, "name"},
		{"rollout", `{attachments: [], rollout: {soakSeconds: 60, timeoutSeconds: 30}}`, "timeoutSeconds must be longer than soakSeconds"},
		{"no-attachments", `{nodeSelector: {}}`, "attachments: Required value"},
	} {
		doc := "apiVersion: leaf.dev/v1alpha1\nkind: LeafPolicy\nmetadata: {name: " + tc.name + "}\nspec: " + tc.spec
		if !strings.HasPrefix(tc.spec, "{") {
			doc = "apiVersion: leaf.dev/v1alpha1\nkind: LeafPolicy\nmetadata: {name: " + tc.name + "}\nspec:\n  " + tc.spec
		}
		err := create(doc)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want 422 saying %q", tc.name, err, tc.want)
		}
	}
}

// TestDeployManifests applies every manifest kustomization.yaml lists to
// a real API server (server-side, so every field is validated), and
// checks that the printer columns answer with a policy's status.
func TestDeployManifests(t *testing.T) {
	c := kubetest.Start(t)
	dir := filepath.Join("..", "..", "..", "deploy", "kubernetes")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct{ Resources []string }
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, r := range k.Resources {
		files = append(files, filepath.Join(dir, r))
	}
	if len(files) < 7 {
		t.Fatalf("kustomization lists %v", k.Resources)
	}
	c.Apply(t, files...)
	kc, _ := kubetest.Clients(t, c.Admin)
	ds, err := kc.AppsV1().DaemonSets("leaf-system").Get(context.Background(), "leaf-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !ds.Spec.Template.Spec.HostNetwork || ds.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Fatalf("agent DaemonSet: %+v", ds.Spec.Template.Spec)
	}
	// kubectl get's table: the columns the CRD declares.
	tbl, err := kc.CoreV1().RESTClient().Get().AbsPath("/apis/leaf.dev/v1alpha1/leafpolicies").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"Selected", "Converged", "Conflicted", "Rollout"} {
		if !strings.Contains(string(tbl), `"name":"`+col+`"`) {
			t.Errorf("kubectl get leafpolicies has no %s column: %s", col, tbl)
		}
	}
}

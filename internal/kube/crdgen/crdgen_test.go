package crdgen

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCommittedCRDsAreCurrent fails when the CRDs under deploy/kubernetes
// differ from what the Go types generate: run make generate.
func TestCommittedCRDsAreCurrent(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	files, err := Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "crds", name))
		if err != nil {
			t.Fatalf("%v: run make generate", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/kubernetes/crds/%s is stale: run make generate", name)
		}
	}
}

// Command crdgen writes leaf's CRD manifests (run from the repository
// root: go run ./internal/kube/crdgen/cmd deploy/kubernetes/crds).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/leaf-ebpf/leaf/internal/kube/crdgen"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdgen OUTPUT-DIRECTORY")
		os.Exit(2)
	}
	files, err := crdgen.Files(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crdgen:", err)
		os.Exit(1)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(os.Args[1], name), data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "crdgen:", err)
			os.Exit(1)
		}
	}
}

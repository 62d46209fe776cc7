// Package packages holds the kernel functions built from this repository's
// sources. They are embedded in leafd as its default package repository.
package packages

import (
	"bytes"
	"embed"
	"fmt"

	"github.com/cilium/ebpf"
)

// FS holds one directory per package: leaf.yaml, README.md, the BPF C
// source and the generated object.
//
//go:embed */leaf.yaml */README.md */*.bpf.c */*.bpf.o
var FS embed.FS

// Spec parses the object of the built-in package name, NAME/NAME.bpf.o,
// for benchmarks and tests that load it without leafd.
func Spec(name string) (*ebpf.CollectionSpec, error) {
	obj, err := FS.ReadFile(name + "/" + name + ".bpf.o")
	if err != nil {
		return nil, err
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", name, err)
	}
	return spec, nil
}

// Package packages holds the kernel functions built from this repository's
// sources. They are embedded in leafd as its default package repository.
package packages

import "embed"

// FS holds one directory per package: leaf.yaml, README.md, the BPF C
// source and the generated object.
//
//go:embed */leaf.yaml */README.md */*.bpf.c */*.bpf.o
var FS embed.FS

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
)

var initNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func pkgInitCmd(g *globals) *cobra.Command {
	var hook string
	var noVmlinux bool
	c := &cobra.Command{
		Use:   "init NAME [DIR]",
		Short: "Scaffold a package: leaf.yaml, NAME.bpf.c, vmlinux.h from the running kernel's BTF (bpftool), README.md, .leafignore",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !initNameRE.MatchString(name) {
				return fmt.Errorf("%q is not a package name (lower-case letters, digits and '-', starting with a letter)", name)
			}
			t, ok := initHooks[hook]
			if !ok {
				return fmt.Errorf("--hook %q: want xdp, tc or tracepoint", hook)
			}
			dir := name
			if len(args) == 2 {
				dir = args[1]
			}
			if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
				return fmt.Errorf("%s exists and is not empty", dir)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			files, err := initFiles(name, t)
			if err != nil {
				return err
			}
			if !noVmlinux {
				h, err := vmlinuxHeader()
				if err != nil {
					return err
				}
				files["vmlinux.h"] = h
			}
			for f, data := range files {
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.out, "%s: leaf.yaml %s.bpf.c README.md %s", dir, name, ocipkg.IgnoreFile)
			if !noVmlinux {
				fmt.Fprint(g.out, " vmlinux.h")
			}
			fmt.Fprintf(g.out, "\nnext: leaf pkg build %s && leaf pkg lint %s\n", dir, dir)
			return nil
		},
	}
	c.Flags().StringVar(&hook, "hook", "xdp", "xdp, tc or tracepoint (sched/sched_process_exec)")
	c.Flags().BoolVar(&noVmlinux, "no-vmlinux", false, "do not generate vmlinux.h (bring your own headers)")
	return c
}

// vmlinuxHeader dumps the running kernel's BTF as C ($BPFTOOL, bpftool
// by default): every kernel type, for CO-RE programs.
func vmlinuxHeader() ([]byte, error) {
	bpftool := envOr("BPFTOOL", "bpftool")
	out, err := exec.Command(bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c").Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("vmlinux.h from /sys/kernel/btf/vmlinux with %s: %s (or --no-vmlinux)", bpftool, msg)
	}
	return out, nil
}

// initHook is what differs between the hooks a scaffold starts from.
type initHook struct {
	Hook, Type, Section, Ctx, Verdict, Defines string
}

var initHooks = map[string]initHook{
	"xdp":        {Hook: "xdp", Type: "xdp", Section: "xdp", Ctx: "struct xdp_md *ctx", Verdict: "XDP_PASS"},
	"tc":         {Hook: "tc", Type: "sched_cls", Section: "tc", Ctx: "struct __sk_buff *skb", Verdict: "TC_ACT_OK", Defines: "#define TC_ACT_OK 0\n"},
	"tracepoint": {Hook: "tracepoint", Type: "tracepoint", Section: "tracepoint/sched/sched_process_exec", Ctx: "void *ctx", Verdict: "0"},
}

func initFiles(name string, h initHook) (map[string][]byte, error) {
	data := struct {
		initHook
		Name, Func string
	}{h, name, "count_" + regexp.MustCompile(`-`).ReplaceAllString(name, "_")}
	files := map[string][]byte{}
	for f, text := range map[string]string{"leaf.yaml": initManifest, name + ".bpf.c": initSource, "README.md": initReadme, ocipkg.IgnoreFile: initIgnore} {
		var b bytes.Buffer
		if err := template.Must(template.New(f).Parse(text)).Execute(&b, data); err != nil {
			return nil, err
		}
		files[f] = b.Bytes()
	}
	return files, nil
}

const initManifest = `apiVersion: leaf.dev/v1alpha1
kind: Package
name: {{.Name}}
version: 0.1.0
description: Counts the events of a {{.Hook}} hook (scaffolded by leaf pkg init; say what it does).
license: GPL-2.0-only OR BSD-2-Clause
programs:
  - name: {{.Func}}
    object: {{.Name}}.bpf.o
    function: {{.Func}}
    type: {{.Type}}
    hooks: [{{.Hook}}]
params:
  - name: step
    description: What each event adds to the counter.
    type: u64
    default: 1
    const: step
metrics:
  - name: events_total
    help: Events counted.
    type: counter
    map: counters
    key: 0
build:
  cflags: []      # extra clang flags, for example -DDEBUG
  include: []     # header directories inside the package
`

const initSource = `// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// {{.Name}}: counts the events of a {{.Hook}} hook. Scaffolded by leaf pkg init.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
{{.Defines}}
// Set before load from the parameter "step".
volatile const __u64 step = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("{{.Section}}")
int {{.Func}}({{.Ctx}})
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&counters, &key);

	if (n)
		*n += step;
	return {{.Verdict}};
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
`

const initReadme = `# {{.Name}}

Counts the events of a {{.Hook}} hook in the per-CPU map ` + "`counters`" + ` (key 0),
exported as ` + "`leaf_pkg_{{.Name}}_events_total`" + `; the parameter ` + "`step`" + ` is what
each event adds.

    leaf pkg build .          # compiles {{.Name}}.bpf.c (vmlinux.h is left out of the package: .leafignore)
    leaf pkg lint .
    leaf pkg sign {{.Name}}@0.1.0 --layout leaf-packages --key KEY

vmlinux.h holds the types of the kernel it was generated on (bpftool btf dump);
CO-RE relocations let the object run on other kernels.
`

const initIgnore = `# Not part of the package: build inputs and scratch files.
vmlinux.h
*.swp
*~
`

package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/chain"
	"github.com/leaf-ebpf/leaf/internal/desired"
)

// ChainPackage is the package the leafd chain benchmark applies: the step
// program of bench/bpf/chainbench.bpf.o, its counter slot a parameter.
const ChainPackage = "chainbench@1.0.0"

const chainManifest = `apiVersion: leaf.dev/v1alpha1
kind: Package
name: chainbench
version: 1.0.0
description: One trivial XDP step (count the packet in a per-CPU array slot, pass it), for the chain cost benchmark.
license: GPL-2.0-only OR BSD-2-Clause
programs:
  - name: step
    object: chainbench.bpf.o
    function: xdp_step
    type: xdp
    hooks: [xdp]
params:
  - name: slot
    description: Counter slot of this copy.
    type: u32
    default: 0
    const: slot
`

// WriteChainRepository writes a package repository holding ChainPackage
// into dir (created), for leafd's --repository flag.
func WriteChainRepository(dir string) error {
	return writePackage(dir, "chainbench", chainManifest, "chainbench.bpf.o", chainObject)
}

// ChainDocument returns a desired-state document with, for each size n in
// sizes, a chain of n ChainPackage attachments on the XDP hook of
// ifaces[i] in netns: c<n>-<j> with priority j+1 and slot j.
func ChainDocument(netns string, ifaces []string, sizes []int) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: chainbench}\nspec:\n  attachments:\n")
	for i, n := range sizes {
		for j := range n {
			fmt.Fprintf(&b, "    - name: c%d-%02d\n", n, j)
			fmt.Fprintf(&b, "      package: %s\n", ChainPackage)
			fmt.Fprintf(&b, "      priority: %d\n", j+1)
			fmt.Fprintf(&b, "      hook: {type: xdp, interface: %s, netns: %s}\n", ifaces[i], netns)
			fmt.Fprintf(&b, "      params: {slot: %d}\n", j)
		}
	}
	return []byte(b.String())
}

// LeafdChains applies ChainDocument through leafd (whose repositories
// must include WriteChainRepository's) and returns, by size, the program
// the kernel runs first on each hook: the program of the hook's link, as
// leafd's status names it. It checks that the chain has n members: all
// fused into that program, or, for a tail-call chain, that following the
// leaf_chain_next maps from there visits exactly n programs. The caller
// closes the programs.
func LeafdChains(ctx context.Context, c *client.Client, netns string, ifaces []string, sizes []int) (map[int]*ebpf.Program, error) {
	if len(ifaces) < len(sizes) {
		return nil, fmt.Errorf("%d interfaces for %d chains", len(ifaces), len(sizes))
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	res, err := c.Apply(ctx, ChainDocument(netns, ifaces, sizes), false)
	if err != nil {
		return nil, fmt.Errorf("apply the chains: %w", err)
	}
	if err := CheckApply(res, total, false); err != nil {
		return nil, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	links := map[string]uint32{}
	progs := map[string]uint32{}
	fused := map[string]bool{}
	for _, a := range st.Attachments {
		links[a.Name] = a.LinkID
		progs[a.Name] = a.ProgramID
		fused[a.Name] = a.Chain != nil && a.Chain.Mode == desired.ChainModeFused
	}
	out := map[int]*ebpf.Program{}
	fail := func(err error) (map[int]*ebpf.Program, error) {
		for _, p := range out {
			p.Close()
		}
		return nil, err
	}
	for _, n := range sizes {
		first := fmt.Sprintf("c%d-00", n)
		id := links[first]
		if id == 0 {
			return fail(fmt.Errorf("status shows no link for %s", first))
		}
		p, err := linkProgram(link.ID(id))
		if err != nil {
			return fail(fmt.Errorf("%s: %w", first, err))
		}
		out[n] = p
		if fused[first] {
			// One program: every member's status names it.
			for j := range n {
				name := fmt.Sprintf("c%d-%02d", n, j)
				if !fused[name] || progs[name] == 0 || progs[name] != progs[first] {
					return fail(fmt.Errorf("%s is not fused into %s's program %d", name, first, progs[first]))
				}
			}
			if pid, err := programID(p); err != nil || uint32(pid) != progs[first] {
				return fail(fmt.Errorf("the hook of the chain of %d runs program %d, not the fused program %d (%v)", n, pid, progs[first], err))
			}
			continue
		}
		got, err := chainLength(p)
		if err != nil {
			return fail(fmt.Errorf("chain of %d: %w", n, err))
		}
		if got != n {
			return fail(fmt.Errorf("the kernel runs %d programs on the hook of the chain of %d", got, n))
		}
	}
	return out, nil
}

func programID(p *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := p.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

// linkProgram opens the program a link runs.
func linkProgram(id link.ID) (*ebpf.Program, error) {
	lk, err := link.NewFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open link %d: %w", id, err)
	}
	defer lk.Close()
	info, err := lk.Info()
	if err != nil {
		return nil, fmt.Errorf("link %d: %w", id, err)
	}
	return ebpf.NewProgramFromID(info.Program)
}

// chainLength counts the programs from p on by following each one's
// leaf_chain_next map.
func chainLength(p *ebpf.Program) (int, error) {
	n := 0
	cur, err := p.Clone()
	if err != nil {
		return 0, err
	}
	for cur != nil {
		n++
		if n > 32 {
			cur.Close()
			return n, errors.New("more than 32 members")
		}
		next, err := nextMember(cur)
		cur.Close()
		if err != nil {
			return n, err
		}
		cur = next
	}
	return n, nil
}

// nextMember returns the program in key 0 of p's leaf_chain_next map, or
// nil if the slot is empty.
func nextMember(p *ebpf.Program) (*ebpf.Program, error) {
	info, err := p.Info()
	if err != nil {
		return nil, err
	}
	ids, _ := info.MapIDs()
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			return nil, err
		}
		mi, err := m.Info()
		if err != nil || mi.Type != ebpf.ProgramArray || mi.Name != chain.NextMap {
			m.Close()
			continue
		}
		var pid uint32
		err = m.Lookup(uint32(0), &pid)
		m.Close()
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return ebpf.NewProgramFromID(ebpf.ProgramID(pid))
	}
	return nil, fmt.Errorf("program has no %s map", chain.NextMap)
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Programs for the chain cost benchmark (bench/chain.go, `leafbench chain`).
//
// One "step" is the unit of work every configuration repeats: add one to a
// slot of a per-CPU array. The configurations compared:
//
//   - xdp_step: one step and XDP_PASS, with no chaining code. leaf chains N
//     copies of it by rewriting each at load time (internal/chain), exactly
//     as leafd does.
//   - xdp_single_N: one program doing N steps inline (N = 1, 2, 5, 10).
//   - xdp_root + xdp_coop_step: a chain built the way l3afd builds one. The
//     root tail-calls key 0 of its PROG_ARRAY; each member does its step
//     and then tail-calls key 0 of its own PROG_ARRAY (L3AF's cooperative
//     contract), which the loader fills with the next member.
//   - xdp_empty: returns XDP_PASS; what BPF_PROG_TEST_RUN costs by itself.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_STEPS 16

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_STEPS);
	__type(key, __u32);
	__type(value, __u64);
} steps SEC(".maps");

// The slot this copy counts into: set at load time, so that N copies of one
// program count separately. The single programs count into slot + i.
volatile const __u32 slot = 0;

// The l3afd-style root's PROG_ARRAY, and each cooperative member's.
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} root_next SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} coop_next SEC(".maps");

static __always_inline void step(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&steps, &idx);

	if (v)
		*v += 1;
}

SEC("xdp")
int xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_step(struct xdp_md *ctx)
{
	step(slot);
	return XDP_PASS;
}

#define SINGLE(n)                                       \
	SEC("xdp")                                      \
	int xdp_single_##n(struct xdp_md *ctx)          \
	{                                               \
		_Pragma("unroll")                       \
		for (__u32 i = 0; i < n; i++)           \
			step(slot + i);                 \
		return XDP_PASS;                        \
	}

SINGLE(1)
SINGLE(2)
SINGLE(5)
SINGLE(10)

SEC("xdp")
int xdp_root(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &root_next, 0);
	return XDP_PASS;
}

SEC("xdp")
int xdp_coop_step(struct xdp_md *ctx)
{
	step(slot);
	bpf_tail_call(ctx, &coop_next, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

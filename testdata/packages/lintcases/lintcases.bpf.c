// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// lintcases: one XDP program with one map of each kind a manifest can get
// wrong, so the lint tests can declare parameters and metrics against
// them and compare lint's verdict with apply's.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// A ring buffer: records, not values; metrics cannot read it.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

// Per-CPU values: one per CPU, so a parameter cannot be written here.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

// A u32 key set.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} allow SEC(".maps");

// A large array: one series per key would explode a scrape.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} big SEC(".maps");

volatile const __u32 limit = 10;

SEC("xdp")
int lint_xdp(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&pcpu, &k);
	if (v)
		*v += limit;
	if (bpf_map_lookup_elem(&allow, &k))
		return XDP_PASS;
	v = bpf_map_lookup_elem(&big, &k);
	if (v)
		*v += 1;
	bpf_ringbuf_output(&events, &k, sizeof(k), 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

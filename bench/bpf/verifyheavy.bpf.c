// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// A program the verifier takes long over, for the parallel-load benchmark
// (bench/batch.go, `leafbench parallel`): a bounded loop the verifier walks
// iteration by iteration (the counter is exact, so no state prunes
// another), 7 instructions each, 350 000 in all (the limit is 1 000 000).
// It counts the packets it sees and passes them all.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define ITERATIONS 50000

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("xdp")
int xdp_verify_heavy(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&seen, &key);
	__u64 x = ctx->data_end - ctx->data;

#pragma nounroll
	for (__u32 i = 0; i < ITERATIONS; i++) {
		x = x * 31 + i;
		asm volatile("" : "+r"(x));
	}
	if (n)
		__sync_fetch_and_add(n, 1 + (x & 0));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

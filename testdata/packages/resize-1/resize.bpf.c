// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// resize 1.0.0: counts IPv4 packets per source address in a hash map of
// 16 entries (version 1.0.0 holds 16, 2.0.0 64), for the upgrade tests:
// the kernel cannot reuse a pinned map whose max_entries changed.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __be32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("xdp")
int count_sources(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u64 one = 1, *n;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	n = bpf_map_lookup_elem(&seen, &ip->saddr);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&seen, &ip->saddr, &one, BPF_NOEXIST);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// pktcount: count packets and bytes on any packet hook (XDP, TC, cgroup skb)
// and let every packet through.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "../include/leaf_count.h"

// Key 0: packets, key 1: bytes.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Packet sizes: key i counts packets of at most 64, 128, 256, 512, 1024
// and 1518 bytes (i = 0..5), key 6 larger ones, key 7 holds the sum of
// all sizes. The manifest declares it as a histogram.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} sizes SEC(".maps");

static __always_inline __u32 size_bucket(__u64 bytes)
{
	if (bytes <= 64)
		return 0;
	if (bytes <= 128)
		return 1;
	if (bytes <= 256)
		return 2;
	if (bytes <= 512)
		return 3;
	if (bytes <= 1024)
		return 4;
	if (bytes <= 1518)
		return 5;
	return 6;
}

static __always_inline void count(__u64 bytes)
{
	leaf_count(&counters, 0);
	leaf_add(&counters, 1, bytes);
	leaf_count(&sizes, size_bucket(bytes));
	leaf_add(&sizes, 7, bytes);
}

SEC("xdp")
int count_xdp(struct xdp_md *ctx)
{
	count(ctx->data_end - ctx->data);
	return XDP_PASS;
}

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	count(skb->len);
	return TC_ACT_OK;
}

SEC("cgroup_skb/ingress")
int count_cgroup_skb(struct __sk_buff *skb)
{
	count(skb->len);
	return 1; // allow
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// pktcount: count packets and bytes on any packet hook (XDP, TC, cgroup skb)
// and let every packet through.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

// Key 0: packets, key 1: bytes.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u64 bytes)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counters, &k);
	if (v)
		*v += 1;
	k = 1;
	v = bpf_map_lookup_elem(&counters, &k);
	if (v)
		*v += bytes;
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

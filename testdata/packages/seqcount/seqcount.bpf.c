// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// seqcount: a plain XDP or TC program with no chaining code, for tests. It
// records how many times it saw each sequence number (the first 8 bytes,
// big endian, of UDP datagrams to port `port`) and passes every packet, so
// tests can prove that a chain member saw every packet exactly once.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);   // sequence number
	__type(value, __u32); // times seen
} seen SEC(".maps");

volatile const __u16 port = 9000;
// verdict_other is returned for packets that are not the test stream.
volatile const __u32 drop_all = 0;

static __always_inline void record(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;
	__u64 *payload, seq;
	__u32 one = 1, *n;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return;
	if (ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(port))
		return;
	payload = (void *)(udp + 1);
	if ((void *)(payload + 1) > data_end)
		return;
	seq = bpf_be64_to_cpu(*payload);
	n = bpf_map_lookup_elem(&seen, &seq);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&seen, &seq, &one, BPF_NOEXIST);
}

SEC("xdp")
int seq_xdp(struct xdp_md *ctx)
{
	record((void *)(long)ctx->data, (void *)(long)ctx->data_end);
	return drop_all ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int seq_tc(struct __sk_buff *skb)
{
	record((void *)(long)skb->data, (void *)(long)skb->data_end);
	return drop_all ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

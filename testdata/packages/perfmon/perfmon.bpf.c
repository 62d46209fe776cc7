// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// perfmon: a test fixture for leaf tail on a perf event array. For every
// IPv4 UDP datagram to `port` it writes a record (addresses, ports,
// length, and the first 8 payload bytes as a big-endian sequence number)
// with bpf_perf_event_output to `events`. Passes every packet.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct datagram {
	__u64 seq;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 len;
};

// A global of the type keeps struct datagram in the object's BTF, where
// leaf tail finds it.
struct datagram datagram_type __attribute__((unused));

// max_entries 0: the loader sizes it to the possible CPUs.
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

volatile const __u16 port = 9000;

SEC("xdp")
int perfmon(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;
	__u64 *payload;
	struct datagram d;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(port))
		return XDP_PASS;
	payload = (void *)(udp + 1);
	if ((void *)(payload + 1) > end)
		return XDP_PASS;
	__builtin_memset(&d, 0, sizeof(d));
	d.seq = bpf_be64_to_cpu(*payload);
	d.saddr = ip->saddr;
	d.daddr = ip->daddr;
	d.sport = udp->source;
	d.dport = udp->dest;
	d.len = (__u32)(end - data);
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &d, sizeof(d));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// l3afcoop: a test fixture following L3AF's cooperative chaining contract.
// It declares a PROG_ARRAY and tail-calls key 0 of it at its end; the
// daemon fills the map with the next program. Like seqcount, it records
// each sequence number of the UDP test stream to `port` it sees.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xdp_next SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} seen SEC(".maps");

volatile const __u16 port = 9000;

SEC("xdp")
int coop_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u64 *payload = (void *)(udp + 1);

	if ((void *)(payload + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP) &&
	    ip->protocol == IPPROTO_UDP && ip->ihl == 5 && udp->dest == bpf_htons(port)) {
		__u64 seq = bpf_be64_to_cpu(*payload);
		__u32 one = 1, *n = bpf_map_lookup_elem(&seen, &seq);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			bpf_map_update_elem(&seen, &seq, &one, BPF_NOEXIST);
	}
	bpf_tail_call(ctx, &xdp_next, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

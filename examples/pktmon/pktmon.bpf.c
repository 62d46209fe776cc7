// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// pktmon: for every IPv4 packet on an XDP hook, write a record (addresses,
// ports, protocol, length) to the ring buffer `events`, which `leaf tail`
// decodes from struct event; count packets per protocol for metrics and
// the companion; count records the full ring buffer refused. Passes every
// packet.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct event {
	__u64 time_ns;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 len;
	__u8 protocol;
	__u8 pad[7];
};

// A global of the type keeps struct event in the object's BTF, where
// leaf tail finds it.
struct event event_type __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

// Packets per IP protocol.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} protocols SEC(".maps");

// Key 0: records the ring buffer had no room for.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

SEC("xdp")
int pktmon(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u32 proto, zero = 0;
	__u64 *n;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	proto = ip->protocol;
	n = bpf_map_lookup_elem(&protocols, &proto);
	if (n)
		*n += 1;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			*n += 1;
		return XDP_PASS;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->time_ns = bpf_ktime_get_ns();
	e->saddr = ip->saddr;
	e->daddr = ip->daddr;
	e->protocol = ip->protocol;
	e->len = (__u32)(end - data);
	if (ip->ihl == 5 && (ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_TCP)) {
		struct udphdr *l4 = (void *)(ip + 1);

		if ((void *)(l4 + 1) <= end) {
			e->sport = l4->source;
			e->dport = l4->dest;
		}
	}
	bpf_ringbuf_submit(e, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

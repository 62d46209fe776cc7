// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// portfilter: drop TCP and UDP packets whose destination port is listed in
// blocked_ports, counting drops per port. Everything else passes.
#include <linux/bpf.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../include/leaf_count.h"
#include "../include/leaf_parse.h"

// Keys are destination ports in host byte order; the value is unused.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} blocked_ports SEC(".maps");

// Packets dropped, per destination port.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u64);
} drops SEC(".maps");

// Packets seen and passed (key 0), and dropped (key 1).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

// Load-time parameters: which protocols are filtered.
volatile const __u8 filter_tcp = 1;
volatile const __u8 filter_udp = 1;

// dest_port returns the destination port of a TCP or UDP packet that this
// program filters, or 0.
static __always_inline int dest_port(void *data, void *data_end)
{
	struct leaf_pkt p;

	// Only the first fragment carries the L4 header.
	if (!leaf_parse_ip(data, data_end, &p, NULL, NULL) || p.later_fragment)
		return 0;
	if (p.proto == IPPROTO_TCP && filter_tcp) {
		struct tcphdr *tcp = p.l4;
		return leaf_has_l4(&p, data_end, sizeof(*tcp)) ? bpf_ntohs(tcp->dest) : 0;
	}
	if (p.proto == IPPROTO_UDP && filter_udp) {
		struct udphdr *udp = p.l4;
		return leaf_has_l4(&p, data_end, sizeof(*udp)) ? bpf_ntohs(udp->dest) : 0;
	}
	return 0;
}

SEC("xdp")
int xdp_port_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 port = dest_port(data, data_end);

	if (port && bpf_map_lookup_elem(&blocked_ports, &port)) {
		__u64 one = 1, *n = bpf_map_lookup_elem(&drops, &port);
		if (n)
			*n += 1;
		else
			bpf_map_update_elem(&drops, &port, &one, BPF_NOEXIST);
		leaf_count(&totals, 1);
		return XDP_DROP;
	}
	leaf_count(&totals, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

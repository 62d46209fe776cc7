// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// netparams: an XDP filter whose every input is a leaf parameter of a
// network type (ipv4, ipv6, cidr, cidr6, mac, be16, enum, …), so tests can
// check on the kernel that leaf encodes them the way packets carry them.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// enum: the verdict for a matching packet (drop: 1, tx: 3).
volatile const __u32 action = XDP_DROP;
// be16: a UDP destination port to match, as the packet carries it.
volatile const __be16 port = 0;

struct lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __be32);
	__type(value, __u8);
} addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct in6_addr);
	__type(value, __u8);
} addrs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4);
	__type(value, __u8);
} nets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6);
	__type(value, __u8);
} nets6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u8[ETH_ALEN]);
	__type(value, __u8);
} macs SEC(".maps");

// Scalars kept in maps: a big-endian mark and a label (string<16>).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __be32);
} mark SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[16]);
} label SEC(".maps");

SEC("xdp")
int netparams(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (bpf_map_lookup_elem(&macs, eth->h_source))
		return action;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct lpm4 k = {.prefixlen = 32};

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		if (bpf_map_lookup_elem(&addrs, &ip->saddr))
			return action;
		__builtin_memcpy(k.addr, &ip->saddr, 4);
		if (bpf_map_lookup_elem(&nets, &k))
			return action;
		if (ip->protocol == IPPROTO_UDP && ip->ihl == 5) {
			struct udphdr *udp = (void *)(ip + 1);

			if ((void *)(udp + 1) > end)
				return XDP_PASS;
			if (port && udp->dest == port)
				return action;
		}
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct lpm6 k = {.prefixlen = 128};

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		if (bpf_map_lookup_elem(&addrs6, &ip6->saddr))
			return action;
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
		if (bpf_map_lookup_elem(&nets6, &k))
			return action;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

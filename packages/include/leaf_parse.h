// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// leaf_parse.h: the packet-parsing prologue of the packet packages in
// packages/ (firewall, ratelimit, connlimit, portfilter, mirror,
// flowexport), in one place. A package includes it by its path relative to
// the package's source, #include "../include/leaf_parse.h", so `make
// generate` and `leaf pkg build packages/NAME` need no include flag and the
// name recorded in the object's BTF line info is the same in any checkout.
//
// What it parses, on XDP and TC alike (both hand it data and data_end):
//
//   Ethernet
//     -> IPv4 (header length from ihl, at least 20 bytes, options skipped)
//        or IPv6 (the fixed 40-byte header; extension headers only with
//        leaf_ipv6_skip_ext)
//     -> the transport header's position; callers check its bounds with
//        leaf_has_l4 before reading it, or take the ports with leaf_ports.
//
// Every function is __always_inline: the verifier sees the bounds checks
// in the caller's own code, as when each package wrote them out, and the
// struct below lives in registers after inlining (fields a package never
// reads cost nothing).
//
// Not parsed: VLAN tags (a frame whose EtherType is 802.1Q or 802.1ad is
// "not IP"; on TC ingress the kernel has usually moved a received frame's
// tag to skb->vlan_tci already), tunnels, and IPv6 extension headers unless
// the caller walks them with leaf_ipv6_skip_ext.
#ifndef LEAF_PARSE_H
#define LEAF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// IPv4: the fragment offset bits of frag_off (network byte order).
#define LEAF_IP_OFFSET 0x1fff

// How many IPv6 extension headers leaf_ipv6_skip_ext walks at most.
#define LEAF_IPV6_MAX_EXT 4

// An IP packet as leaf_parse_ip found it.
struct leaf_pkt {
	void *l3; // struct iphdr (family 4) or struct ipv6hdr (6), all in bounds
	void *l4; // the transport header: not bounds-checked (leaf_has_l4)
	__u8 family; // 4 or 6
	__u8 proto; // IPv4 protocol or IPv6 next header (IPPROTO_*)
	// A fragment other than the first: it carries no transport header, so
	// leaf_has_l4 and leaf_ports refuse it (l4 points into payload).
	__u8 later_fragment;
};

// leaf_parse_ip reads the Ethernet and IP headers of the frame at
// [data, data_end). It returns 1 and fills p for IPv4 (with a whole header
// of at least 20 bytes) and IPv6 (with the whole fixed header); it returns
// 0 for anything else: another EtherType or a header cut short.
//
// When saddr and daddr are not NULL it also copies the source and
// destination address into them, in network byte order: all four words for
// IPv6, word 0 only for IPv4 (zero the arrays first, as a map key must be
// anyway). The copies happen inside each family's branch, so a caller that
// writes them straight into its map key pays for no intermediate copy;
// pass NULL for addresses you do not need (the code is then left out).
static __always_inline int leaf_parse_ip(void *data, void *data_end, struct leaf_pkt *p, __u32 *saddr, __u32 *daddr)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return 0;
		__u32 ihl = ip->ihl; // header length in 4-byte words
		if (ihl < 5)
			return 0;
		p->family = 4;
		p->proto = ip->protocol;
		if (saddr)
			saddr[0] = ip->saddr;
		if (daddr)
			daddr[0] = ip->daddr;
		// Only the first fragment carries the transport header.
		p->later_fragment = (ip->frag_off & bpf_htons(LEAF_IP_OFFSET)) != 0;
		p->l3 = ip;
		p->l4 = (void *)ip + ihl * 4;
		return 1;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return 0;
		p->family = 6;
		p->proto = ip6->nexthdr;
		if (saddr)
			__builtin_memcpy(saddr, &ip6->saddr, 16);
		if (daddr)
			__builtin_memcpy(daddr, &ip6->daddr, 16);
		p->later_fragment = 0;
		p->l3 = ip6;
		p->l4 = ip6 + 1;
		return 1;
	}
	return 0;
}

// leaf_ipv6_skip_ext walks up to LEAF_IPV6_MAX_EXT IPv6 extension headers
// (hop-by-hop, routing, destination options, fragment) so that p->proto
// and p->l4 name the transport header. A fragment header of a fragment
// other than the first sets later_fragment. When an extension header is
// cut short or there are more of them, p->proto is left at an extension
// header's number, which no caller takes for TCP or UDP. A no-op on IPv4.
static __always_inline void leaf_ipv6_skip_ext(struct leaf_pkt *p, void *data_end)
{
	if (p->family != 6)
		return;
#pragma unroll
	for (int i = 0; i < LEAF_IPV6_MAX_EXT; i++) {
		__u8 *h = p->l4;
		if (p->proto != IPPROTO_HOPOPTS && p->proto != IPPROTO_ROUTING &&
		    p->proto != IPPROTO_DSTOPTS && p->proto != IPPROTO_FRAGMENT)
			return;
		if ((void *)(h + 8) > data_end)
			return;
		if (p->proto == IPPROTO_FRAGMENT) {
			p->proto = h[0];
			// Fragment offset (13 bits, in 8-byte units) not zero.
			if ((h[2] << 8 | h[3]) & 0xfff8) {
				p->later_fragment = 1;
				return;
			}
			p->l4 = h + 8;
			continue;
		}
		p->proto = h[0];
		p->l4 = h + (h[1] + 1) * 8; // length in 8-byte units, not counting the first 8
	}
}

// leaf_has_l4 says whether the first size bytes of the transport header
// at p->l4 are in the packet (never for a later fragment, which has none).
// Read p->l4 only after it said yes: the verifier accepts the access
// because this check is on the same pointer.
static __always_inline int leaf_has_l4(const struct leaf_pkt *p, void *data_end, __u32 size)
{
	return !p->later_fragment && p->l4 + size <= data_end;
}

// leaf_ports returns 1 and the source and destination port (host byte
// order) of a TCP or UDP packet whose first 8 transport bytes are in the
// packet, and leaves *sport and *dport untouched otherwise. TCP's ports sit
// at the same offsets as UDP's, so a UDP header's 8 bytes are enough.
static __always_inline int leaf_ports(const struct leaf_pkt *p, void *data_end, __u16 *sport, __u16 *dport)
{
	struct udphdr *uh = p->l4;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0;
	if (!leaf_has_l4(p, data_end, sizeof(*uh)))
		return 0;
	*sport = bpf_ntohs(uh->source);
	*dport = bpf_ntohs(uh->dest);
	return 1;
}

#endif // LEAF_PARSE_H

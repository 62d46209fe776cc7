// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// firewall: ordered allow/deny rules on source and destination prefixes,
// protocol and port ranges, with a default policy, for IPv4 and IPv6, on
// XDP and TC.
//
// The rule set lives in two generations; fw_active names the one packets
// use. A writer fills the other generation, then flips fw_active with one
// 4-byte map write. Every packet reads fw_active once and looks only at
// that generation, so it sees the old rule set or the new one, never a mix.
//
// Lookup: the source and the destination address each go through an LPM
// trie whose entries are the distinct prefixes of the rules ("classes").
// A class lists, in rule order, the rules whose prefix contains it, which
// are exactly the rules the address can match on that side. The program
// walks the shorter of the two lists and returns the first rule that
// matches all fields. Its cost depends on how many rules overlap a packet's
// addresses, not on how many rules there are.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "../include/leaf_count.h"
#include "../include/leaf_parse.h"

#define MAX_RULES 131072 // per generation
#define MAX_CANDS 1048576 // class list entries per generation

#define ACTION_ALLOW 1
#define ACTION_DENY 2

// LPM keys: the generation is part of the prefix, so both generations share
// one trie and a lookup never crosses into the other one.
struct key4 {
	__u32 prefixlen; // 32 (generation) + prefix length
	__u32 gen;
	__u8 addr[4];
};

struct key6 {
	__u32 prefixlen; // 32 (generation) + prefix length
	__u32 gen;
	__u8 addr[16];
};

// A class: the slice [first, first+count) of fw_cands of its generation.
struct class {
	__u32 first;
	__u32 count;
};

// A rule. Addresses are in network byte order, already masked; ports in
// host byte order, inclusive ranges. IPv4 addresses use word 0.
struct rule {
	__u8 action;
	__u8 proto; // 0: any
	__u8 family; // 4, 6, or 0 for both
	__u8 ports; // 1: the rule has a port range and needs TCP or UDP
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u32 src[4];
	__u32 smask[4];
	__u32 dst[4];
	__u32 dmask[4];
};

// Per generation: the default action and the number of rules.
struct config {
	__u32 default_action;
	__u32 nrules;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fw_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct config);
} fw_config SEC(".maps");

#define LPM_ENTRIES (2 * MAX_RULES + 2)

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key4);
	__type(value, struct class);
} fw_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key4);
	__type(value, struct class);
} fw_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key6);
	__type(value, struct class);
} fw_src6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key6);
	__type(value, struct class);
} fw_dst6 SEC(".maps");

// Rule i of generation g is at g*MAX_RULES + i.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_RULES);
	__type(key, __u32);
	__type(value, struct rule);
} fw_rules SEC(".maps");

// Class lists: rule indexes; entry j of generation g is at g*MAX_CANDS + j.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_CANDS);
	__type(key, __u32);
	__type(value, __u32);
} fw_cands SEC(".maps");

// Packets that matched rule i of generation g, at g*MAX_RULES + i.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} fw_hits SEC(".maps");

#define TOTAL_ALLOWED 0 // allowed by a rule
#define TOTAL_DENIED 1 // denied by a rule
#define TOTAL_DEFAULT_ALLOWED 2
#define TOTAL_DEFAULT_DENIED 3
#define TOTAL_NOT_IP 4 // neither IPv4 nor IPv6: passed unexamined

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} fw_totals SEC(".maps");

struct pkt {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 ports; // the packet carries TCP or UDP ports
};

struct walk {
	struct pkt *p;
	__u32 gen;
	__u32 first;
	__s64 match; // rule index, -1 for none
	__u8 action;
};

// parse returns -1 for a frame that is not IPv4 or IPv6, else fills p
// (ports only for a first fragment with a whole UDP-sized header) and
// returns 0.
static __always_inline int parse(void *data, void *data_end, struct pkt *p)
{
	struct leaf_pkt ip;

	if (!leaf_parse_ip(data, data_end, &ip, p->src, p->dst))
		return -1;
	// Up to LEAF_IPV6_MAX_EXT extension headers, to the transport header.
	leaf_ipv6_skip_ext(&ip, data_end);
	p->family = ip.family;
	p->proto = ip.proto;
	p->ports = leaf_ports(&ip, data_end, &p->sport, &p->dport);
	return 0;
}

static __always_inline int addr_match(const __u32 *a, const __u32 *want, const __u32 *mask, __u8 family)
{
	if ((a[0] & mask[0]) != want[0])
		return 0;
	if (family == 4)
		return 1;
	return (a[1] & mask[1]) == want[1] && (a[2] & mask[2]) == want[2] &&
	       (a[3] & mask[3]) == want[3];
}

static __always_inline int rule_match(const struct rule *r, const struct pkt *p)
{
	if (r->family && r->family != p->family)
		return 0;
	if (r->proto && r->proto != p->proto)
		return 0;
	if (r->ports) {
		if (!p->ports || p->sport < r->sport_lo || p->sport > r->sport_hi ||
		    p->dport < r->dport_lo || p->dport > r->dport_hi)
			return 0;
	}
	return addr_match(p->src, r->src, r->smask, p->family) &&
	       addr_match(p->dst, r->dst, r->dmask, p->family);
}

// step checks the i-th candidate of the class; bpf_loop calls it.
static long step(__u32 i, void *data)
{
	struct walk *w = data;
	__u32 slot = w->gen * MAX_CANDS + w->first + i;
	__u32 *idx = bpf_map_lookup_elem(&fw_cands, &slot);
	if (!idx || *idx >= MAX_RULES)
		return 1;
	__u32 at = w->gen * MAX_RULES + *idx;
	struct rule *r = bpf_map_lookup_elem(&fw_rules, &at);
	if (!r)
		return 1;
	if (rule_match(r, w->p)) {
		w->match = *idx;
		w->action = r->action;
		return 1;
	}
	return 0;
}

static __always_inline struct class *lookup(void *trie, __u32 gen, const __u32 *addr, __u8 family)
{
	if (family == 4) {
		struct key4 k = {.prefixlen = 64, .gen = gen};
		__builtin_memcpy(k.addr, addr, 4);
		return bpf_map_lookup_elem(trie, &k);
	}
	struct key6 k = {.prefixlen = 160, .gen = gen};
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(trie, &k);
}

// decide returns 1 to let the packet through, 0 to drop it.
static __always_inline int decide(void *data, void *data_end)
{
	struct pkt p = {};
	__u32 zero = 0;

	if (parse(data, data_end, &p) < 0) {
		leaf_count(&fw_totals, TOTAL_NOT_IP);
		return 1;
	}
	__u32 *active = bpf_map_lookup_elem(&fw_active, &zero);
	if (!active)
		return 1;
	__u32 gen = *active & 1;
	struct config *cfg = bpf_map_lookup_elem(&fw_config, &gen);
	if (!cfg)
		return 1;
	__u32 def = cfg->default_action;

	struct class *cs, *cd;
	if (p.family == 4) {
		cs = lookup(&fw_src4, gen, p.src, 4);
		cd = lookup(&fw_dst4, gen, p.dst, 4);
	} else {
		cs = lookup(&fw_src6, gen, p.src, 6);
		cd = lookup(&fw_dst6, gen, p.dst, 6);
	}
	struct walk w = {.p = &p, .gen = gen, .match = -1};
	if (cs && cd) {
		struct class *c = cs->count <= cd->count ? cs : cd;
		w.first = c->first;
		if (c->count)
			bpf_loop(c->count, step, &w, 0);
	}
	if (w.match < 0) {
		if (def == ACTION_DENY) {
			leaf_count(&fw_totals, TOTAL_DEFAULT_DENIED);
			return 0;
		}
		leaf_count(&fw_totals, TOTAL_DEFAULT_ALLOWED);
		return 1;
	}
	__u32 at = gen * MAX_RULES + (__u32)w.match;
	leaf_count(&fw_hits, at);
	if (w.action == ACTION_DENY) {
		leaf_count(&fw_totals, TOTAL_DENIED);
		return 0;
	}
	leaf_count(&fw_totals, TOTAL_ALLOWED);
	return 1;
}

SEC("xdp")
int firewall_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	return decide(data, data_end) ? XDP_PASS : XDP_DROP;
}

SEC("tc")
int firewall_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return decide(data, data_end) ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

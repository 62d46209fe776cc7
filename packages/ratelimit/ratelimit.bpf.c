// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// ratelimit: a token bucket (rate, burst) per destination port, and
// optionally per source prefix, on new TCP connections (SYN) or on every
// TCP and UDP packet, IPv4 and IPv6. Packets over the limit are dropped;
// everything else passes.
//
// Each bucket is one u64, the theoretical arrival time of GCRA (the
// virtual-time form of a token bucket): a packet conforms when
// max(tat, now) + interval - now <= burst * interval, and then moves tat
// to max(tat, now) + interval. The update is a compare-and-swap, so CPUs
// share one exact bucket without locks or per-CPU budgets.
#include <linux/bpf.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../include/leaf_count.h"
#include "../include/leaf_parse.h"

// Destination ports (host byte order) that are limited.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} rl_ports SEC(".maps");

// Key 0: rate (packets per second); key 1: burst (packets).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} rl_config SEC(".maps");

struct bucket_key {
	__u16 port;
	__u8 family;
	__u8 pad;
	__u32 src[4]; // masked to the source prefix; zero when not per source
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct bucket_key);
	__type(value, __u64); // GCRA theoretical arrival time, ns
} rl_buckets SEC(".maps");

#define STAT_PASSED 0 // limited traffic within the limit
#define STAT_DROPPED 1 // limited traffic over the limit
#define STAT_OTHER 2 // traffic the limiter does not apply to

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} rl_stats SEC(".maps");

// Load-time parameters.
volatile const __u8 syn_only = 1; // limit TCP SYNs (new connections) only
volatile const __u8 source_prefix4 = 0; // per-source buckets: IPv4 prefix length, 0 for none
volatile const __u8 source_prefix6 = 0; // IPv6 prefix length, 0 for none

// count counts the packet under key in rl_stats and returns verdict.
static __always_inline int count(__u32 key, int verdict)
{
	leaf_count(&rl_stats, key);
	return verdict;
}

static __always_inline __u32 mask_word(__u32 w, int bits)
{
	// w holds network-order bytes; mask the first bits of them.
	if (bits >= 32)
		return w;
	if (bits <= 0)
		return 0;
	return w & bpf_htonl(~0u << (32 - bits));
}

// classify fills the bucket key of a packet the limiter applies to and
// returns 1, or returns 0.
static __always_inline int classify(void *data, void *data_end, struct bucket_key *k)
{
	struct leaf_pkt p;

	if (!leaf_parse_ip(data, data_end, &p, NULL, NULL) || p.later_fragment)
		return 0;
	k->family = p.family;
	if (p.family == 4 && source_prefix4) {
		struct iphdr *ip = p.l3;
		k->src[0] = mask_word(ip->saddr, source_prefix4);
	}
	if (p.family == 6 && source_prefix6) {
		struct ipv6hdr *ip6 = p.l3;
		for (int i = 0; i < 4; i++)
			k->src[i] = mask_word(ip6->saddr.in6_u.u6_addr32[i], source_prefix6 - 32 * i);
	}
	if (p.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = p.l4;
		if (!leaf_has_l4(&p, data_end, sizeof(*tcp)))
			return 0;
		if (syn_only && !(tcp->syn && !tcp->ack))
			return 0;
		k->port = bpf_ntohs(tcp->dest);
	} else if (p.proto == IPPROTO_UDP && !syn_only) {
		struct udphdr *udp = p.l4;
		if (!leaf_has_l4(&p, data_end, sizeof(*udp)))
			return 0;
		k->port = bpf_ntohs(udp->dest);
	} else {
		return 0;
	}
	return bpf_map_lookup_elem(&rl_ports, &k->port) != 0;
}

// conforms takes one token from the bucket, or says there is none.
static __always_inline int conforms(struct bucket_key *k)
{
	__u32 key = 0;
	__u64 *rate = bpf_map_lookup_elem(&rl_config, &key);
	key = 1;
	__u64 *burst = bpf_map_lookup_elem(&rl_config, &key);
	if (!rate || !burst || !*rate)
		return 1; // no rate set: the limiter is off
	__u64 interval = 1000000000ULL / *rate;
	__u64 tau = interval * (*burst ? *burst : 1);
	__u64 now = bpf_ktime_get_ns();

	__u64 *tat = bpf_map_lookup_elem(&rl_buckets, k);
	if (!tat) {
		// A new bucket starts full; its first packet takes one token.
		__u64 start = now + interval;
		if (bpf_map_update_elem(&rl_buckets, k, &start, BPF_NOEXIST) == 0 || !(tat = bpf_map_lookup_elem(&rl_buckets, k)))
			return 1;
	}
	// A few attempts: a failure means another CPU took a token meanwhile.
	for (int i = 0; i < 4; i++) {
		__u64 old = *tat;
		__u64 t = old > now ? old : now;
		if (t + interval - now > tau)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, t + interval) == old)
			return 1;
	}
	return 0;
}

SEC("xdp")
int xdp_ratelimit(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bucket_key k = {};

	if (!classify(data, data_end, &k))
		return count(STAT_OTHER, XDP_PASS);
	if (conforms(&k))
		return count(STAT_PASSED, XDP_PASS);
	return count(STAT_DROPPED, XDP_DROP);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

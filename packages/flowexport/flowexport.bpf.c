// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// flowexport: per-flow (5-tuple) packet and byte counters on TC ingress or
// egress, IPv4 and IPv6, in an LRU hash. The companion (leaf-flowexport)
// reads the map and exports the flows as IPFIX to a collector; it deletes
// a flow once it has been idle for the idle timeout.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "../include/leaf_count.h"
#include "../include/leaf_parse.h"

struct flow_key {
	__u32 saddr[4]; // network byte order; IPv4 in word 0
	__u32 daddr[4];
	__u16 sport; // host byte order; 0 without ports
	__u16 dport;
	__u8 proto;
	__u8 family; // 4 or 6
	__u16 pad;
};

// Counters are shared by every CPU and added atomically.
struct flow {
	__u64 packets;
	__u64 bytes; // IP bytes (from the IP header on)
	__u64 first_ns; // bpf_ktime_get_ns of the first packet
	__u64 last_ns; // of the latest packet
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow);
} flows SEC(".maps");

#define STAT_PACKETS 0 // IP packets counted
#define STAT_NEW_FLOWS 1
#define STAT_NOT_IP 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} flow_stats SEC(".maps");

static __always_inline int parse(struct __sk_buff *skb, struct flow_key *k)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct leaf_pkt p;

	if (!leaf_parse_ip(data, data_end, &p, k->saddr, k->daddr))
		return 0;
	k->family = p.family;
	k->proto = p.proto;
	// Ports stay 0 for other protocols, later fragments and short headers.
	leaf_ports(&p, data_end, &k->sport, &k->dport);
	return 1;
}

SEC("tc")
int flowexport_tc(struct __sk_buff *skb)
{
	struct flow_key k = {};

	if (!parse(skb, &k)) {
		leaf_count(&flow_stats, STAT_NOT_IP);
		return TC_ACT_OK;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 len = skb->len > ETH_HLEN ? skb->len - ETH_HLEN : 0;
	struct flow *f = bpf_map_lookup_elem(&flows, &k);
	if (!f) {
		struct flow nf = {.first_ns = now, .last_ns = now};
		// Another CPU may create it first; then add to theirs.
		if (bpf_map_update_elem(&flows, &k, &nf, BPF_NOEXIST) == 0)
			leaf_count(&flow_stats, STAT_NEW_FLOWS);
		f = bpf_map_lookup_elem(&flows, &k);
		if (!f)
			return TC_ACT_OK;
	}
	__sync_fetch_and_add(&f->packets, 1);
	__sync_fetch_and_add(&f->bytes, len);
	f->last_ns = now;
	leaf_count(&flow_stats, STAT_PACKETS);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

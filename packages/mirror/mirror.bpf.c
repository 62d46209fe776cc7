// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// mirror: copy the packets that match a filter (protocol, TCP/UDP port) to
// another interface with bpf_clone_redirect, on TC ingress or egress, IPv4
// and IPv6. The original packet goes on as if the program were not there.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "../include/leaf_count.h"
#include "../include/leaf_parse.h"

// Ports (host byte order) whose packets are copied, as source or
// destination port.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} mirror_ports SEC(".maps");

// Key 0: the interface index copies go out of (0: mirroring off);
// key 1: the IP protocol to match (0: any).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} mirror_config SEC(".maps");

#define STAT_MIRRORED 0
#define STAT_FAILED 1 // bpf_clone_redirect refused (interface gone or down)
#define STAT_SKIPPED 2 // did not match

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} mirror_stats SEC(".maps");

// Load-time: copy every packet of the protocol, whatever its ports.
volatile const __u8 all_ports = 0;

static __always_inline __u32 config(__u32 key)
{
	__u32 *v = bpf_map_lookup_elem(&mirror_config, &key);
	return v ? *v : 0;
}

static __always_inline int matches(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct leaf_pkt p;
	__u16 sport, dport;

	if (!leaf_parse_ip(data, data_end, &p, NULL, NULL))
		return 0;
	__u32 want = config(1);
	if (want && want != p.proto)
		return 0;
	if (all_ports)
		return 1;
	if (!leaf_ports(&p, data_end, &sport, &dport))
		return 0;
	return bpf_map_lookup_elem(&mirror_ports, &dport) || bpf_map_lookup_elem(&mirror_ports, &sport);
}

SEC("tc")
int mirror_tc(struct __sk_buff *skb)
{
	__u32 ifindex = config(0);

	if (!ifindex || !matches(skb)) {
		leaf_count(&mirror_stats, STAT_SKIPPED);
		return TC_ACT_OK;
	}
	// The copy leaves through the target's egress; the original is not
	// touched and continues.
	if (bpf_clone_redirect(skb, ifindex, 0) == 0)
		leaf_count(&mirror_stats, STAT_MIRRORED);
	else
		leaf_count(&mirror_stats, STAT_FAILED);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// connlimit: cap the concurrent TCP connections to listed local ports, on
// the TC ingress hook of the server's interface, IPv4 and IPv6.
//
// A SYN for a connection not yet tracked takes a slot of its port with an
// atomic add; when the port is full the SYN is dropped and counted as
// refused. A tracked connection gives its slot back when the client sends
// FIN or RST, or when it has been idle (no packet from the client) for
// idle_timeout_ms: a bpf_timer per connection checks. Whoever deletes the
// connection's entry (FIN, RST or timer, on any CPU) gives the slot back,
// and only one can delete it, so a slot is never returned twice.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../include/leaf_count.h"
#include "../include/leaf_parse.h"

#define CLOCK_MONOTONIC 1

// Local (destination) ports whose connections are capped.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} cl_ports SEC(".maps");

// Key 0: connections allowed at once per port; key 1: idle timeout in ms.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cl_config SEC(".maps");

// Connections open per port.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u64);
} cl_open SEC(".maps");

struct conn_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport; // host byte order: the local port
	__u32 family;
};

struct conn {
	struct bpf_timer timer;
	__u64 last_seen; // ns
	struct conn_key key; // the timer callback needs it to find the port
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn);
} cl_conns SEC(".maps");

#define STAT_ADMITTED 0
#define STAT_REFUSED 1
#define STAT_CLOSED 2 // by FIN or RST
#define STAT_EXPIRED 3 // by the idle timeout

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} cl_stats SEC(".maps");

static __always_inline __u64 config(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&cl_config, &key);
	return v ? *v : 0;
}

static __always_inline void release(__u16 port)
{
	__u64 *open = bpf_map_lookup_elem(&cl_open, &port);
	if (open)
		__sync_fetch_and_add(open, -1);
}

static int expire(void *map, struct conn_key *key, struct conn *c)
{
	__u64 timeout = config(1) * 1000000ULL;
	__u64 idle = bpf_ktime_get_ns() - c->last_seen;
	if (idle < timeout) {
		bpf_timer_start(&c->timer, timeout - idle, 0);
		return 0;
	}
	__u16 port = c->key.dport;
	if (bpf_map_delete_elem(map, key) == 0) {
		release(port);
		leaf_count(&cl_stats, STAT_EXPIRED);
	}
	return 0;
}

// admit takes a slot of the port for a new connection, or refuses it.
static __always_inline int admit(struct conn_key *k)
{
	__u64 max = config(0);
	__u64 zero = 0;
	__u64 *open = bpf_map_lookup_elem(&cl_open, &k->dport);
	if (!open) {
		bpf_map_update_elem(&cl_open, &k->dport, &zero, BPF_NOEXIST);
		open = bpf_map_lookup_elem(&cl_open, &k->dport);
		if (!open)
			return 0;
	}
	if (__sync_fetch_and_add(open, 1) >= max) {
		__sync_fetch_and_add(open, -1);
		return 0;
	}
	struct conn c = {.last_seen = bpf_ktime_get_ns(), .key = *k};
	if (bpf_map_update_elem(&cl_conns, k, &c, BPF_NOEXIST) != 0) {
		__sync_fetch_and_add(open, -1);
		// Tracked already (a retransmitted SYN): it holds its slot.
		return bpf_map_lookup_elem(&cl_conns, k) != 0;
	}
	struct conn *in = bpf_map_lookup_elem(&cl_conns, k);
	if (in) {
		bpf_timer_init(&in->timer, &cl_conns, CLOCK_MONOTONIC);
		bpf_timer_set_callback(&in->timer, expire);
		bpf_timer_start(&in->timer, config(1) * 1000000ULL, 0);
	}
	return 1;
}

static __always_inline int parse(struct __sk_buff *skb, struct conn_key *k, struct tcphdr **tcp)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct leaf_pkt p;
	struct tcphdr *t;

	if (!leaf_parse_ip(data, data_end, &p, k->saddr, k->daddr) || p.later_fragment || p.proto != IPPROTO_TCP)
		return 0;
	t = p.l4;
	if (!leaf_has_l4(&p, data_end, sizeof(*t)))
		return 0;
	k->family = p.family;
	k->sport = bpf_ntohs(t->source);
	k->dport = bpf_ntohs(t->dest);
	*tcp = t;
	return bpf_map_lookup_elem(&cl_ports, &k->dport) != 0;
}

SEC("tc")
int connlimit_ingress(struct __sk_buff *skb)
{
	struct conn_key k = {};
	struct tcphdr *tcp = 0;

	if (!parse(skb, &k, &tcp) || !tcp)
		return TC_ACT_OK;
	if (tcp->syn && !tcp->ack) {
		if (admit(&k)) {
			leaf_count(&cl_stats, STAT_ADMITTED);
			return TC_ACT_OK;
		}
		leaf_count(&cl_stats, STAT_REFUSED);
		return TC_ACT_SHOT;
	}
	struct conn *c = bpf_map_lookup_elem(&cl_conns, &k);
	if (!c)
		return TC_ACT_OK; // opened before the limit, or not ours to count
	if (tcp->fin || tcp->rst) {
		if (bpf_map_delete_elem(&cl_conns, &k) == 0) {
			release(k.dport);
			leaf_count(&cl_stats, STAT_CLOSED);
		}
		return TC_ACT_OK;
	}
	c->last_seen = bpf_ktime_get_ns();
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

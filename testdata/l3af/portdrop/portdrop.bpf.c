// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// portdrop: a test fixture written the way L3AF's kernel functions are
// (ratelimiting, connection-limit): configured through maps l3afd's
// map_args fill, counting into maps its monitor_maps read, and chained
// cooperatively through its own PROG_ARRAY (map_name), key 0 of which it
// tail-calls at its end. Like L3AF's programs it only acts once its
// counter entry exists, which l3afd creates when it loads the program.
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
} xdp_portdrop_next SEC(".maps");

// map_args "portdrop_ports": "7001,7002": UDP destination ports dropped.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} portdrop_ports SEC(".maps");

// map_args "portdrop_config": "1": key 0 switches dropping on. Pinned by
// name, as L3AF's programs pin the maps their user programs share.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portdrop_config SEC(".maps");

// monitor_maps: drops, under key 0 once it exists.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} portdrop_drop_count SEC(".maps");

// monitor_maps: UDP datagrams seen, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} portdrop_recv_count SEC(".maps");

SEC("xdp")
int _xdp_portdrop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 zero = 0;

	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		goto next;
	__u64 *recv = bpf_map_lookup_elem(&portdrop_recv_count, &zero);
	if (recv)
		*recv += 1;
	__u32 *on = bpf_map_lookup_elem(&portdrop_config, &zero);
	if (!on || !*on)
		goto next;
	__u16 port = bpf_ntohs(udp->dest);
	if (!bpf_map_lookup_elem(&portdrop_ports, &port))
		goto next;
	__u64 *drops = bpf_map_lookup_elem(&portdrop_drop_count, &zero);
	if (!drops)
		goto next;
	__sync_fetch_and_add(drops, 1);
	return XDP_DROP;
next:
	bpf_tail_call(ctx, &xdp_portdrop_next, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

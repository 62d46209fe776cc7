// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// badverifier: reads the packet without a bounds check, which the verifier
// must reject. Used by tests of how leaf reports verifier errors.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_unchecked(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	// No check against ctx->data_end.
	if (eth->h_proto == 0)
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Test programs for internal/chain. Apart from xdp_tailcaller and
// xdp_cooperative, none of them knows it may run in a chain: they are plain
// XDP and TC programs, and internal/chain rewrites them at load time.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

// Counter slots in the counters map, one per program.
enum {
	IDX_A,
	IDX_B,
	IDX_C,
	IDX_TC_A,
	IDX_TC_B,
	IDX_SUBPROG,
	IDX_BIGSTACK,
	IDX_COOP,
	IDX_RUNCFG,
	IDX_DEEPCALL,
	IDX_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IDX_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Values computed by programs, checked by the tests.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IDX_MAX);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

// Bit i set: the program counting into slot i returns its "stop" verdict
// (XDP_DROP, or tc_stop_verdict for TC).
volatile const __u32 stop_mask = 0;
// Verdict of the TC programs when their stop bit is not set.
volatile const __s32 tc_verdict = TC_ACT_OK;
volatile const __s32 tc_stop_verdict = TC_ACT_SHOT;

static __always_inline void count(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &idx);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void record(__u32 idx, __u64 val)
{
	bpf_map_update_elem(&results, &idx, &val, BPF_ANY);
}

static __always_inline int xdp_verdict(__u32 idx)
{
	count(idx);
	return (stop_mask & (1u << idx)) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int xdp_count_a(struct xdp_md *ctx)
{
	return xdp_verdict(IDX_A);
}

SEC("xdp")
int xdp_count_b(struct xdp_md *ctx)
{
	return xdp_verdict(IDX_B);
}

SEC("xdp")
int xdp_count_c(struct xdp_md *ctx)
{
	return xdp_verdict(IDX_C);
}

static __always_inline int tc_member(__u32 idx)
{
	count(idx);
	return (stop_mask & (1u << idx)) ? tc_stop_verdict : tc_verdict;
}

SEC("tc")
int tc_count_a(struct __sk_buff *skb)
{
	return tc_member(IDX_TC_A);
}

SEC("tc")
int tc_count_b(struct __sk_buff *skb)
{
	return tc_member(IDX_TC_B);
}

// A bpf-to-bpf subprogram with exits of its own: they must stay exits.
static __noinline int classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;

	if (len < 60)
		return 1;
	if (len > 1000)
		return 3;
	return 2;
}

SEC("xdp")
int xdp_subprog(struct xdp_md *ctx)
{
	int class = classify(ctx);

	count(IDX_SUBPROG);
	record(IDX_SUBPROG, class);
	if (class == 3)
		return XDP_DROP;
	return XDP_PASS;
}

#define BIG_WORDS 56 // 448 bytes of stack

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[BIG_WORDS]);
} bigvals SEC(".maps");

// Uses most of the stack, leaving room for one saved pointer.
SEC("xdp")
int xdp_bigstack(struct xdp_md *ctx)
{
	__u64 buf[BIG_WORDS];
	__u64 sum = 0;
	__u32 zero = 0;
	int i;

	for (i = 0; i < BIG_WORDS; i++)
		buf[i] = (__u64)i * 3 + ctx->ingress_ifindex;
	bpf_map_update_elem(&bigvals, &zero, buf, BPF_ANY);
	__u64 *v = bpf_map_lookup_elem(&bigvals, &zero);
	if (!v)
		return XDP_ABORTED;
	for (i = 0; i < BIG_WORDS; i++)
		sum += v[i];
	count(IDX_BIGSTACK);
	record(IDX_BIGSTACK, sum);
	return XDP_PASS;
}

#define FULL_WORDS 63 // 504 bytes + the 4-byte key: the whole 512

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[FULL_WORDS]);
} fullvals SEC(".maps");

// Uses the whole 512-byte stack: there is no slot left to save ctx in.
SEC("xdp")
int xdp_fullstack(struct xdp_md *ctx)
{
	__u64 buf[FULL_WORDS];
	__u32 zero = 0;
	int i;

	for (i = 0; i < FULL_WORDS; i++)
		buf[i] = i + ctx->ingress_ifindex;
	bpf_map_update_elem(&fullvals, &zero, buf, BPF_ANY);
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jmp_table SEC(".maps");

// Already uses tail calls for its own purposes.
SEC("xdp")
int xdp_tailcaller(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 100 < data_end)
		bpf_tail_call(ctx, &jmp_table, 1);
	return XDP_PASS;
}

// L3AF's cooperative contract: the program declares a PROG_ARRAY and
// tail-calls key 0 at its end; the daemon fills it with the next program.
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} coop_next SEC(".maps");

SEC("xdp")
int xdp_cooperative(struct xdp_md *ctx)
{
	count(IDX_COOP);
	bpf_tail_call(ctx, &coop_next, 0);
	return XDP_PASS;
}

// libxdp's run configuration, spelled out as in <xdp/xdp_helpers.h> so that
// the object builds without libxdp-dev.
#define _CONCAT(x, y) x##y
#define XDP_RUN_CONFIG(f) _CONCAT(_, f) SEC(".xdp_run_config")

struct {
	__uint(priority, 12);
	__uint(XDP_PASS, 1);
	__uint(XDP_DROP, 1);
} XDP_RUN_CONFIG(xdp_runcfg);

SEC("xdp")
int xdp_runcfg(struct xdp_md *ctx)
{
	count(IDX_RUNCFG);
	return XDP_PASS;
}

// A subprogram with a stack frame of its own (128 bytes). Alone it fits;
// fused after xdp_bigstack (a 480-byte frame), the call needs more than the
// kernel's 512 bytes, so such a chain is not fused.
static __noinline __u64 deep_sum(struct xdp_md *ctx)
{
	volatile __u64 buf[16];
	__u64 sum = 0;
	int i;

	for (i = 0; i < 16; i++)
		buf[i] = i + ctx->ingress_ifindex;
	for (i = 0; i < 16; i++)
		sum += buf[i];
	return sum;
}

SEC("xdp")
int xdp_deepcall(struct xdp_md *ctx)
{
	count(IDX_DEEPCALL);
	record(IDX_DEEPCALL, deep_sum(ctx));
	return XDP_PASS;
}

// Does nothing: the unit of the chain benchmark.
SEC("xdp")
int xdp_trivial(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

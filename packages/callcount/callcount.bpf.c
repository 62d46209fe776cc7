// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// callcount: count calls of a user-space function (uprobe) or kernel
// function (kprobe) per process ID.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   // tgid
	__type(value, __u64); // calls
} calls SEC(".maps");

static __always_inline int count_call(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *n = bpf_map_lookup_elem(&calls, &tgid);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&calls, &tgid, &one, BPF_NOEXIST);
	return 0;
}

SEC("uprobe")
int count_uprobe(void *ctx)
{
	return count_call();
}

SEC("kprobe")
int count_kprobe(void *ctx)
{
	return count_call();
}

char LICENSE[] SEC("license") = "GPL";

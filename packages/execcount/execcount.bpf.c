// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// execcount: count successful exec calls per user ID, from the
// sched:sched_process_exec tracepoint.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   // uid
	__type(value, __u64); // exec calls
} execs SEC(".maps");

// Load-time parameter: count only this uid; 0xffffffff counts everyone.
volatile const __u32 only_uid = 0xffffffff;

SEC("tracepoint/sched/sched_process_exec")
int count_exec(void *ctx)
{
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u64 one = 1, *n;

	if (only_uid != 0xffffffff && uid != only_uid)
		return 0;
	n = bpf_map_lookup_elem(&execs, &uid);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&execs, &uid, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

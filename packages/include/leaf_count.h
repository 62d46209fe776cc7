// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// leaf_count.h: the counters of the packages in packages/, in one place.
// Their statistics maps are per-CPU arrays of __u64, which the manifests
// declare as metrics and leafd sums over CPUs; each CPU adds to its own
// copy, so a plain += is exact without atomics.
#ifndef LEAF_COUNT_H
#define LEAF_COUNT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// leaf_add adds n to the __u64 at key of map, a per-CPU array (or any map
// whose value only this CPU writes). A key outside the map is ignored.
static __always_inline void leaf_add(void *map, __u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);
	if (v)
		*v += n;
}

// leaf_count adds one to the counter at key of map (see leaf_add).
static __always_inline void leaf_count(void *map, __u32 key)
{
	leaf_add(map, key, 1);
}

#endif // LEAF_COUNT_H

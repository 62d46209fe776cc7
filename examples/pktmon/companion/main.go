// Command pktmon-summary is pktmon's companion: every -interval it prints
// the packets seen per IP protocol, read from the protocols map whose
// descriptor leafd passes in LEAF_MAP_FDS. It leaves the ring buffer to
// leaf tail.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

func main() {
	interval := flag.Duration("interval", 10*time.Second, "how often to print")
	flag.Parse()
	m, err := mapFromEnv("protocols")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for {
		counts, err := perProtocol(m)
		if err != nil {
			fmt.Fprintln(os.Stderr, "read protocols:", err)
		}
		var protos []int
		for p := range counts {
			protos = append(protos, int(p))
		}
		sort.Ints(protos)
		var parts []string
		for _, p := range protos {
			parts = append(parts, fmt.Sprintf("proto%d=%d", p, counts[uint32(p)]))
		}
		fmt.Println("packets", strings.Join(parts, " "))
		time.Sleep(*interval)
	}
}

// mapFromEnv opens the map leafd passed as NAME=FD in LEAF_MAP_FDS.
func mapFromEnv(name string) (*ebpf.Map, error) {
	for _, kv := range strings.Split(os.Getenv("LEAF_MAP_FDS"), ",") {
		if n, v, ok := strings.Cut(kv, "="); ok && n == name {
			fd, err := strconv.Atoi(v)
			if err != nil {
				return nil, err
			}
			return ebpf.NewMapFromFD(fd)
		}
	}
	return nil, fmt.Errorf("no map %s in LEAF_MAP_FDS=%q", name, os.Getenv("LEAF_MAP_FDS"))
}

// perProtocol sums each protocol's per-CPU counters, leaving out zeros.
func perProtocol(m *ebpf.Map) (map[uint32]uint64, error) {
	out := map[uint32]uint64{}
	var key uint32
	var vals []uint64
	it := m.Iterate()
	for it.Next(&key, &vals) {
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		if sum > 0 {
			out[key] = sum
		}
	}
	return out, it.Err()
}

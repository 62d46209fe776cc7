// Command mapreader is a test companion: it reports who it runs as, then
// prints the sum of key 0 of the map named by -map every -interval, from
// the descriptor leafd passes in LEAF_MAP_FDS.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

func main() {
	name := flag.String("map", "counters", "map to read")
	interval := flag.Duration("interval", 100*time.Millisecond, "how often to print")
	flag.Parse()
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "CapEff:") {
			fmt.Println("self", strings.Join(strings.Fields(l), " "))
		}
	}
	fd := -1
	for _, kv := range strings.Split(os.Getenv("LEAF_MAP_FDS"), ",") {
		if n, v, ok := strings.Cut(kv, "="); ok && n == *name {
			fd, _ = strconv.Atoi(v)
		}
	}
	if fd < 0 {
		fmt.Fprintf(os.Stderr, "no map %s in LEAF_MAP_FDS=%q\n", *name, os.Getenv("LEAF_MAP_FDS"))
		os.Exit(2)
	}
	m, err := ebpf.NewMapFromFD(fd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open map:", err)
		os.Exit(2)
	}
	for {
		var vals []uint64
		var sum uint64
		if err := m.Lookup(uint32(0), &vals); err != nil {
			fmt.Fprintln(os.Stderr, "lookup:", err)
		}
		for _, v := range vals {
			sum += v
		}
		fmt.Printf("%s=%d\n", *name, sum)
		time.Sleep(*interval)
	}
}

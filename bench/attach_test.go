package bench

import (
	"bytes"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/packages"
)

// BenchmarkLoadAttach50 splits the reference apply (portfilter loaded and
// attached with an XDP link, native mode, on 50 veths) into its two
// halves, and attaches with 1, 2, 4 and 8 threads at once: what running
// attaches in parallel could win. Metrics, per run of 50:
//
//	load-ms        ebpf.NewCollection of the 50, one after another
//	attach-ms      link.AttachXDP of the 50 (wall time)
//	attach-cpu-ms  the attaching threads' CPU time
//
// Run: go test -run '^$' -bench LoadAttach50 -benchtime 3x ./bench/
func BenchmarkLoadAttach50(b *testing.B) {
	testenv.RequireKernel(b)
	s, err := NewSandbox(nil, 50)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	obj, err := packages.FS.ReadFile("portfilter/portfilter.bpf.o")
	if err != nil {
		b.Fatal(err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join("/var/run/netns", s.NsB)
	idx := make([]int, len(s.Ifaces))
	for i, ifc := range s.Ifaces {
		if idx[i], err = netnsutil.Ifindex(path, ifc); err != nil {
			b.Fatal(err)
		}
	}
	for _, workers := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("threads=%d", workers), func(b *testing.B) {
			var load, attach, cpu time.Duration
			for range b.N {
				t0 := time.Now()
				colls := make([]*ebpf.Collection, len(idx))
				for i := range colls {
					if colls[i], err = ebpf.NewCollection(spec); err != nil {
						b.Fatal(err)
					}
				}
				load += time.Since(t0)
				links := make([]link.Link, len(idx))
				var cpuNS atomic.Int64
				next := make(chan int)
				var wg sync.WaitGroup
				var failed atomic.Value
				t0 = time.Now()
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						runtime.LockOSThread()
						defer runtime.UnlockOSThread()
						for i := range next {
							err := netnsutil.Do(path, func() error {
								c0, _ := threadCPU()
								defer func() { c1, _ := threadCPU(); cpuNS.Add(c1 - c0) }()
								var err error
								links[i], err = link.AttachXDP(link.XDPOptions{Program: colls[i].Programs["xdp_port_filter"], Interface: idx[i]})
								return err
							})
							if err != nil {
								failed.Store(err)
							}
						}
					}()
				}
				for i := range idx {
					next <- i
				}
				close(next)
				wg.Wait()
				attach += time.Since(t0)
				cpu += time.Duration(cpuNS.Load())
				for i := range links {
					if links[i] != nil {
						links[i].Close()
					}
					colls[i].Close()
				}
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
			}
			n := float64(b.N) * 1e6
			b.ReportMetric(float64(load)/n, "load-ms")
			b.ReportMetric(float64(attach)/n, "attach-ms")
			b.ReportMetric(float64(cpu)/n, "attach-cpu-ms")
		})
	}
}

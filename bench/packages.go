package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/leaf-ebpf/leaf/internal/firewall"
	"github.com/leaf-ebpf/leaf/internal/frames"
	"github.com/leaf-ebpf/leaf/packages"
)

// CostCase is one program and the frame it is measured with.
type CostCase struct {
	Name  string
	Prog  *ebpf.Program
	Frame []byte
	// Want is the verdict every run must return (a wrong one means the
	// case does not measure what it says).
	Want uint32
}

// MeasureCosts runs every case rounds times, repeat packets each
// (BPF_PROG_TEST_RUN), interleaved in a shuffled order per round, and
// returns each case's median CPU time per packet in ns (the thread's CPU
// time, as the chain table measures it).
func MeasureCosts(cases []CostCase, rounds, repeat int) ([]float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	samples := make([][]float64, len(cases))
	order := make([]int, len(cases))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range rounds {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			c := cases[i]
			for {
				interrupted := false
				t0, err := threadCPU()
				if err != nil {
					return nil, err
				}
				ret, _, err := c.Prog.Benchmark(c.Frame, repeat, func() { interrupted = true })
				t1, err2 := threadCPU()
				if err = errors.Join(err, err2); err != nil {
					return nil, fmt.Errorf("%s: %w", c.Name, err)
				}
				if ret != c.Want {
					return nil, fmt.Errorf("%s: verdict %d, want %d", c.Name, ret, c.Want)
				}
				if !interrupted {
					samples[i] = append(samples[i], float64(t1-t0)/float64(repeat))
					break
				}
			}
		}
	}
	out := make([]float64, len(cases))
	for i, s := range samples {
		out[i] = Median(s)
	}
	return out, nil
}

// Verdicts the cases expect.
const (
	xdpPassVerdict = 2
	tcOK           = 0
)

// emptyProgram returns a program of the type that only returns verdict:
// the harness's floor.
func emptyProgram(typ ebpf.ProgramType, verdict int32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{Type: typ, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()}})
}

// loadPackage loads a built-in package's object with its load-time
// constants and returns the collection.
func loadPackage(name string, consts map[string]any) (*ebpf.Collection, error) {
	spec, err := packages.Spec(name)
	if err != nil {
		return nil, err
	}
	for k, v := range consts {
		if err := spec.Variables[k].Set(v); err != nil {
			return nil, fmt.Errorf("%s: set %s: %w", name, k, err)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	return coll, nil
}

// PackageCosts is the per-packet cost of each package of this repository.
type PackageCosts struct {
	Cases []CostCase
	colls []*ebpf.Collection
	progs []*ebpf.Program
}

// Close releases every program and map.
func (p *PackageCosts) Close() {
	for _, c := range p.colls {
		c.Close()
	}
	for _, pr := range p.progs {
		pr.Close()
	}
}

var (
	benchSrc = netip.MustParseAddr("10.0.0.1")
	benchDst = netip.MustParseAddr("10.0.0.2")
)

func udp(dport uint16) []byte {
	return frames.Packet{Src: benchSrc, Dst: benchDst, Proto: frames.UDP, Sport: 40000, Dport: dport}.Build()
}

// LoadPackageCosts loads every package with a configuration that makes the
// measured frame take its working path (a rule matched, a bucket drawn
// from, a tracked connection, a copy made, a flow counted), and the empty
// XDP and TC programs as floors. Mirroring copies to ifindex 1 (lo), so
// call it inside a throwaway network namespace.
func LoadPackageCosts() (_ *PackageCosts, err error) {
	p := &PackageCosts{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	add := func(name string, prog *ebpf.Program, frame []byte, want uint32) {
		p.Cases = append(p.Cases, CostCase{Name: name, Prog: prog, Frame: frame, Want: want})
	}
	for _, e := range []struct {
		name    string
		typ     ebpf.ProgramType
		verdict int32
	}{{"empty XDP program (floor)", ebpf.XDP, xdpPassVerdict}, {"empty TC program (floor)", ebpf.SchedCLS, tcOK}} {
		prog, err := emptyProgram(e.typ, e.verdict)
		if err != nil {
			return nil, err
		}
		p.progs = append(p.progs, prog)
		add(e.name, prog, udp(9), uint32(e.verdict))
	}
	load := func(name string, consts map[string]any) (*ebpf.Collection, error) {
		c, err := loadPackage(name, consts)
		if err == nil {
			p.colls = append(p.colls, c)
		}
		return c, err
	}

	fw, err := load("firewall", nil)
	if err != nil {
		return nil, err
	}
	rs, err := firewall.ParseString("default deny\ndeny tcp from 192.0.2.0/24 dport 22\nallow udp from 10.0.0.0/8 dport 9000-9100\nallow icmp\n")
	if err != nil {
		return nil, err
	}
	if _, err := firewall.Maps(fw.Maps).Install(rs); err != nil {
		return nil, err
	}
	add("firewall (XDP), 3 rules, 2nd matches", fw.Programs["firewall_xdp"], udp(9050), xdpPassVerdict)
	add("firewall (TC), 3 rules, 2nd matches", fw.Programs["firewall_tc"], udp(9050), tcOK)

	rl, err := load("ratelimit", map[string]any{"syn_only": uint8(0)})
	if err != nil {
		return nil, err
	}
	rl.Maps["rl_ports"].Put(uint16(9000), uint8(1))
	rl.Maps["rl_config"].Put(uint32(0), uint64(1_000_000_000)) // every packet conforms
	rl.Maps["rl_config"].Put(uint32(1), uint64(1_000_000))
	add("ratelimit, limited port, within the rate", rl.Programs["xdp_ratelimit"], udp(9000), xdpPassVerdict)

	cl, err := load("connlimit", nil)
	if err != nil {
		return nil, err
	}
	cl.Maps["cl_ports"].Put(uint16(9000), uint8(1))
	cl.Maps["cl_config"].Put(uint32(0), uint64(10))
	cl.Maps["cl_config"].Put(uint32(1), uint64(600_000))
	syn := frames.Packet{Src: benchSrc, Dst: benchDst, Proto: frames.TCP, Sport: 40000, Dport: 9000, TCPFlags: frames.SYN}
	if ret, err := cl.Programs["connlimit_ingress"].Run(&ebpf.RunOptions{Data: syn.Build()}); err != nil || ret != tcOK {
		return nil, fmt.Errorf("connlimit: admit the measured connection: verdict %d, %v", ret, err)
	}
	ack := syn
	ack.TCPFlags = frames.ACK
	add("connlimit, packet of a tracked connection", cl.Programs["connlimit_ingress"], ack.Build(), tcOK)

	mi, err := load("mirror", nil)
	if err != nil {
		return nil, err
	}
	mi.Maps["mirror_ports"].Put(uint16(9000), uint8(1))
	mi.Maps["mirror_config"].Put(uint32(0), uint32(1)) // lo
	add("mirror, matching packet copied (to lo)", mi.Programs["mirror_tc"], udp(9000), tcOK)
	add("mirror, packet not matching", mi.Programs["mirror_tc"], udp(9001), tcOK)

	fe, err := load("flowexport", nil)
	if err != nil {
		return nil, err
	}
	add("flowexport, packet of a known flow", fe.Programs["flowexport_tc"], udp(9000), tcOK)

	pf, err := load("portfilter", nil)
	if err != nil {
		return nil, err
	}
	add("portfilter (reference), port not listed", pf.Programs["xdp_port_filter"], udp(9000), xdpPassVerdict)
	return p, nil
}

package flowexport

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestIPFIXDecodedByTshark encodes records of both families, enough for
// several messages, and has tshark decode them.
func TestIPFIXDecodedByTshark(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var recs []Record
	for i := 0; i < 40; i++ {
		src, dst := netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", i+1)), netip.MustParseAddr("192.0.2.1")
		if i%2 == 1 {
			src, dst = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1)), netip.MustParseAddr("2001:db8::ffff")
		}
		recs = append(recs, Record{Src: src, Dst: dst, Sport: uint16(1000 + i), Dport: 53, Proto: 17,
			Packets: uint64(i + 1), Bytes: uint64(100 * (i + 1)), Start: now.Add(-time.Second), End: now, Reason: ReasonIdle})
	}
	e := Encoder{Domain: 7}
	msgs := e.Encode(recs, now)
	if len(msgs) < 2 {
		t.Fatalf("%d messages; the test wants records split over several", len(msgs))
	}
	for _, m := range msgs {
		if len(m) > 1400 {
			t.Fatalf("message of %d bytes, more than 1400", len(m))
		}
	}
	flows := testenv.DecodeIPFIX(t, msgs)
	if len(flows) != len(recs) {
		t.Fatalf("tshark decoded %d flow records, want %d: %v", len(flows), len(recs), flows)
	}
	got := map[string]map[string]string{}
	for _, f := range flows {
		got[f["cflow.srcport"]] = f
	}
	for _, r := range recs {
		f := got[fmt.Sprint(r.Sport)]
		src := f["cflow.srcaddr"]
		if r.Src.Is6() {
			src = f["cflow.srcaddrv6"]
		}
		if f == nil || src != r.Src.String() || f["cflow.packets"] != fmt.Sprint(r.Packets) ||
			f["cflow.octets"] != fmt.Sprint(r.Bytes) || f["cflow.dstport"] != "53" || f["cflow.protocol"] != "17" {
			t.Errorf("record from port %d (%s, %d packets, %d bytes) decoded as %v", r.Sport, r.Src, r.Packets, r.Bytes, f)
		}
	}
}

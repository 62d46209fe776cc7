package testenv

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DecodeIPFIX has Wireshark's tshark, an independent decoder, read the
// datagrams as IPFIX (wrapped into a capture by text2pcap, UDP port 4739)
// and returns every flow record as its fields (cflow.srcaddr, cflow.packets,
// …). It skips the test when tshark or text2pcap is missing.
func DecodeIPFIX(t testing.TB, datagrams [][]byte) []map[string]string {
	t.Helper()
	for _, tool := range []string{"tshark", "text2pcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package tshark)", tool)
		}
	}
	dir := t.TempDir()
	var dump strings.Builder
	for _, d := range datagrams {
		for off := 0; off < len(d); off += 16 {
			end := min(off+16, len(d))
			dump.WriteString(strings.Repeat("0", 6-len(hexOffset(off))) + hexOffset(off) + " ")
			dump.WriteString(spaced(hex.EncodeToString(d[off:end])) + "\n")
		}
	}
	in, pcap := filepath.Join(dir, "in.txt"), filepath.Join(dir, "ipfix.pcap")
	os.WriteFile(in, []byte(dump.String()), 0o600)
	if out, err := exec.Command("text2pcap", "-q", "-u", "4739,4739", in, pcap).CombinedOutput(); err != nil {
		t.Fatalf("text2pcap: %v: %s", err, out)
	}
	out, err := exec.Command("tshark", "-r", pcap, "-d", "udp.port==4739,cflow", "-T", "json").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var packets []any
	if err := json.Unmarshal(out, &packets); err != nil {
		t.Fatalf("tshark output: %v", err)
	}
	var flows []map[string]string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["cflow.srcport"]; ok {
				f := map[string]string{}
				for k, v := range x {
					if s, ok := v.(string); ok {
						f[k] = s
					}
				}
				flows = append(flows, f)
				return
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(packets)
	return flows
}

func hexOffset(n int) string {
	return strings.TrimLeft(hex.EncodeToString([]byte{byte(n >> 16), byte(n >> 8), byte(n)}), "0")
}

func spaced(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		b.WriteString(h[i:i+2] + " ")
	}
	return b.String()
}

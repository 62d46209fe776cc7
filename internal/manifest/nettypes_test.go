package manifest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNetworkTypes(t *testing.T) {
	enum := Param{Name: "action", Type: "enum", Values: map[string]uint32{"drop": 1, "tx": 3}}
	enumT, err := enum.TypeOf()
	if err != nil {
		t.Fatal(err)
	}
	parse := func(s string) Type {
		typ, err := ParseType(s)
		if err != nil {
			t.Fatal(err)
		}
		return typ
	}
	le32 := func(n uint32) []byte { return le(uint64(n), 4) }
	for _, tc := range []struct {
		typ    Type
		v      any
		want   []byte
		format string // read back in this format gives v again
	}{
		{parse("ipv4"), "10.196.0.3", []byte{10, 196, 0, 3}, "ipv4"},
		{parse("ipv6"), "2001:db8::1", append([]byte{0x20, 0x01, 0x0d, 0xb8}, append(make([]byte, 11), 1)...), "ipv6"},
		{parse("mac"), "02:00:5e:10:00:01", []byte{2, 0, 0x5e, 0x10, 0, 1}, "mac"},
		{parse("cidr"), "10.0.0.0/8", append(le32(8), 10, 0, 0, 0), "cidr"},
		{parse("cidr"), "192.0.2.7", append(le32(32), 192, 0, 2, 7), ""},
		{parse("cidr6"), "2001:db8::/32", append(le32(32), append([]byte{0x20, 0x01, 0x0d, 0xb8}, make([]byte, 12)...)...), "cidr6"},
		{parse("be16"), json.Number("443"), []byte{1, 0xbb}, ""},
		{parse("be32"), json.Number("3232235777"), []byte{192, 168, 1, 1}, ""},
		{parse("be64"), json.Number("1"), []byte{0, 0, 0, 0, 0, 0, 0, 1}, ""},
		{parse("string<8>"), "eth0", []byte("eth0\x00\x00\x00\x00"), ""},
		{enumT, "tx", le32(3), ""},
	} {
		out, err := tc.typ.Encode(tc.v)
		if err != nil {
			t.Errorf("%s.Encode(%v): %v", tc.typ, tc.v, err)
			continue
		}
		if !bytes.Equal(out[0], tc.want) || len(out[0]) != tc.typ.Size() {
			t.Errorf("%s.Encode(%v) = %x, want %x (%d bytes)", tc.typ, tc.v, out[0], tc.want, tc.typ.Size())
		}
		if tc.format != "" {
			if got := Format(tc.format, out[0]); got != tc.v {
				t.Errorf("Format(%s, %x) = %q, want %q", tc.format, out[0], got, tc.v)
			}
			back, err := ParseFormatted(tc.format, tc.v.(string), tc.typ.Size())
			if err != nil || !bytes.Equal(back, out[0]) {
				t.Errorf("ParseFormatted(%s, %v) = %x, %v", tc.format, tc.v, back, err)
			}
		}
		if gv, err := tc.typ.GoValue(tc.v); err != nil {
			t.Errorf("%s.GoValue: %v", tc.typ, err)
		} else if b, ok := gv.([]byte); ok && !bytes.Equal(b, tc.want) {
			t.Errorf("%s.GoValue = %x", tc.typ, b)
		}
	}
	// Lists of network types, as an LPM trie's keys.
	out, err := parse("list<cidr>").Encode([]any{"10.0.0.0/8", "172.16.0.0/12"})
	if err != nil || len(out) != 2 || out[1][0] != 12 {
		t.Errorf("list<cidr>: %x, %v", out, err)
	}
}

func TestNetworkTypesReject(t *testing.T) {
	enum := Param{Name: "action", Type: "enum", Values: map[string]uint32{"drop": 1, "tx": 3}}
	enumT, _ := enum.TypeOf()
	for _, tc := range []struct {
		typ  string
		v    any
		want string
	}{
		{"ipv4", "10.196.0.300", `"10.196.0.300" is not an ipv4 address`},
		{"ipv4", "2001:db8::1", "is not an ipv4 address"},
		{"ipv4", json.Number("180617219"), "expected ipv4 (a string), got number 180617219"},
		{"ipv6", "10.0.0.1", "is not an ipv6 address"},
		{"ipv6", "fe80::1%eth0", "is not an ipv6 address"},
		{"cidr", "10.0.0.1/8", `"10.0.0.1/8" has host bits set (the prefix is 10.0.0.0/8)`},
		{"cidr", "10.0.0.0/33", "is not an IPv4 prefix"},
		{"cidr", "2001:db8::/32", "is not an IPv4 prefix"},
		{"cidr6", "10.0.0.0/8", "is not an IPv6 prefix"},
		{"mac", "02:00:5e:10:00", "is not a MAC address"},
		{"mac", "02:00:5e:10:00:01:02:03", "is not a MAC address"},
		{"be16", json.Number("65536"), "65536 out of range for be16"},
		{"be16", json.Number("-1"), "out of range for be16"},
		{"string<4>", "eth0", "string of 4 bytes does not fit string<4> (at most 3 bytes and a NUL)"},
		{"string<8>", "a\x00b", "does not fit"},
	} {
		typ, err := ParseType(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := typ.Encode(tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s.Encode(%#v): %v, want %q", tc.typ, tc.v, err, tc.want)
		}
	}
	if _, err := enumT.Encode("pass"); err == nil || !strings.Contains(err.Error(), `"pass" is not one of drop, tx`) {
		t.Errorf("enum: %v", err)
	}
	for _, s := range []string{"string<1>", "string<0>", "string<257>", "string<08>", "string<x>", "string"} {
		if _, err := ParseType(s); err == nil {
			t.Errorf("ParseType(%q) accepted", s)
		}
	}
	if _, err := (&Param{Name: "a", Type: "enum"}).TypeOf(); err == nil || !strings.Contains(err.Error(), "an enum needs values") {
		t.Errorf("enum without values: %v", err)
	}
}

func TestFormatWrongSizes(t *testing.T) {
	for _, tc := range []struct{ f, want string }{
		{"ipv4", "0102 (not ipv4: 2 bytes)"},
		{"mac", "0102 (not mac: 2 bytes)"},
		{"port", "258"},
		{"hex", "0102"},
		{"", "513"},
		{"string", `"\x01\x02"`},
	} {
		if got := Format(tc.f, []byte{1, 2}); got != tc.want && !(tc.f == "" && got == "258") {
			t.Errorf("Format(%q, 0102) = %q, want %q", tc.f, got, tc.want)
		}
	}
	if _, err := ParseFormatted("ipv4", "10.0.0.1", 8); err == nil {
		t.Error("an ipv4 key for an 8-byte map was accepted")
	}
	if _, err := ParseFormatted("bogus", "1", 4); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("bogus format: %v", err)
	}
}

package manifest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// encodeNet encodes the types written as strings: addresses, prefixes,
// MAC addresses, strings and enum names. Addresses go in network byte
// order, as packets carry them; an LPM trie key's prefix length in host
// order, as the kernel reads it.
func (t Type) encodeNet(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("expected %s (a string), got %s", t.Scalar, describe(v))
	}
	switch t.Scalar {
	case "ipv4", "ipv6":
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || (t.Scalar == "ipv4") != a.Is4() {
			return nil, fmt.Errorf("%q is not an %s address", s, t.Scalar)
		}
		return a.AsSlice(), nil
	case "cidr", "cidr6":
		return encodePrefix(t.Scalar, s)
	case "mac":
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("%q is not a MAC address (aa:bb:cc:dd:ee:ff)", s)
		}
		return hw, nil
	case "string":
		if len(s) >= t.Len || strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("string of %d bytes does not fit %s (at most %d bytes and a NUL)", len(s), t, t.Len-1)
		}
		out := make([]byte, t.Len)
		copy(out, s)
		return out, nil
	case "enum":
		n, ok := t.Enum[s]
		if !ok {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(sortedNames(t.Enum), ", "))
		}
		return binary.NativeEndian.AppendUint32(nil, n), nil
	}
	return nil, fmt.Errorf("unknown type %s", t.Scalar)
}

// encodePrefix encodes "10.0.0.0/8" as struct { __u32 prefixlen; __u8
// addr[4]; } (cidr6: addr[16]). A bare address is a /32 (/128). Host bits
// set are refused: they are almost always a typo.
func encodePrefix(kind, s string) ([]byte, error) {
	want4 := kind == "cidr"
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	family := "an IPv6"
	if want4 {
		family = "an IPv4"
	}
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4() != want4 {
		return nil, fmt.Errorf("%q is not %s prefix (%s)", s, family, map[bool]string{true: "10.0.0.0/8", false: "2001:db8::/32"}[want4])
	}
	if p.Masked() != p {
		return nil, fmt.Errorf("%q has host bits set (the prefix is %s)", s, p.Masked())
	}
	out := binary.NativeEndian.AppendUint32(nil, uint32(p.Bits()))
	return append(out, p.Addr().AsSlice()...), nil
}

func sortedNames(m map[string]uint32) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Formats in which keys, values and metric labels can be shown.
const (
	FormatAuto   = ""     // unsigned integer when 1, 2, 4 or 8 bytes, else hex
	FormatHex    = "hex"  // the bytes in hex
	FormatUint   = "uint" // unsigned integer, host byte order
	FormatPort   = "port" // 2 bytes in network byte order, as a number
	FormatIPv4   = "ipv4"
	FormatIPv6   = "ipv6"
	FormatMAC    = "mac"
	FormatCIDR   = "cidr"  // LPM trie key, IPv4
	FormatCIDR6  = "cidr6" // LPM trie key, IPv6
	FormatString = "string"
)

// Formats lists the formats by name.
var Formats = []string{"hex", "uint", "port", "ipv4", "ipv6", "mac", "cidr", "cidr6", "string"}

// ValidFormat says whether f names a format ("" is auto).
func ValidFormat(f string) bool {
	if f == FormatAuto {
		return true
	}
	for _, g := range Formats {
		if g == f {
			return true
		}
	}
	return false
}

// Format shows b in format f. Bytes that do not fit the format (the
// wrong size) are shown in hex with the reason.
func Format(f string, b []byte) string {
	bad := func() string { return fmt.Sprintf("%x (not %s: %d bytes)", b, f, len(b)) }
	switch f {
	case FormatAuto, FormatUint:
		if n, ok := uintOf(b); ok {
			return fmt.Sprint(n)
		}
		if f == FormatUint {
			return bad()
		}
		return fmt.Sprintf("%x", b)
	case FormatHex:
		return fmt.Sprintf("%x", b)
	case FormatPort:
		if len(b) != 2 {
			return bad()
		}
		return fmt.Sprint(binary.BigEndian.Uint16(b))
	case FormatIPv4, FormatIPv6:
		a, ok := netip.AddrFromSlice(b)
		if !ok || (f == FormatIPv4) != (len(b) == 4) {
			return bad()
		}
		return a.String()
	case FormatMAC:
		if len(b) != 6 {
			return bad()
		}
		return net.HardwareAddr(b).String()
	case FormatCIDR, FormatCIDR6:
		n := 4
		if f == FormatCIDR6 {
			n = 16
		}
		if len(b) != 4+n {
			return bad()
		}
		a, _ := netip.AddrFromSlice(b[4:])
		return fmt.Sprintf("%s/%d", a, binary.NativeEndian.Uint32(b[:4]))
	case FormatString:
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return fmt.Sprintf("%q", b)
	}
	return bad()
}

// ParseFormatted is Format's inverse for a key given on a command line:
// the bytes of s in format f, size bytes long.
func ParseFormatted(f, s string, size int) ([]byte, error) {
	b, err := parseFormatted(f, s, size)
	if err == nil && len(b) != size {
		err = fmt.Errorf("%q in format %s is %d bytes, the map's keys %d", s, f, len(b), size)
	}
	return b, err
}

func parseFormatted(f, s string, size int) ([]byte, error) {
	var typ string
	switch f {
	case FormatHex:
		var b []byte
		if _, err := fmt.Sscanf(s, "%x", &b); err != nil || len(b) != size {
			return nil, fmt.Errorf("%q is not %d bytes of hex", s, size)
		}
		return b, nil
	case FormatAuto, FormatUint:
		typ = map[int]string{1: "u8", 2: "u16", 4: "u32", 8: "u64"}[size]
		if typ == "" {
			return ParseFormatted(FormatHex, s, size)
		}
		t, _ := ParseType(typ)
		return t.encodeScalar(json.Number(s))
	case FormatPort:
		typ = "be16"
		t, _ := ParseType(typ)
		return t.encodeScalar(json.Number(s))
	case FormatString:
		t := Type{Scalar: "string", Len: size}
		return t.encodeNet(s)
	default:
		t, err := ParseType(f)
		if err != nil {
			return nil, fmt.Errorf("unknown format %q (want %s)", f, strings.Join(Formats, ", "))
		}
		return t.encodeNet(s)
	}
}

// uintOf reads 1, 2, 4 or 8 bytes as an unsigned integer in host order.
func uintOf(b []byte) (uint64, bool) {
	switch len(b) {
	case 1:
		return uint64(b[0]), true
	case 2:
		return uint64(binary.NativeEndian.Uint16(b)), true
	case 4:
		return uint64(binary.NativeEndian.Uint32(b)), true
	case 8:
		return binary.NativeEndian.Uint64(b), true
	}
	return 0, false
}

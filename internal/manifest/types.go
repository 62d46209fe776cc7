package manifest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Type is a parameter type: a fixed-size scalar, or a list of them.
type Type struct {
	// Scalar is bool, u8…u64, i8…i64 (host byte order), be16, be32,
	// be64 (network byte order), ipv4, ipv6, mac, cidr, cidr6, string
	// or enum.
	Scalar string
	List   bool
	// Len is a string's size in bytes, its NUL terminator included.
	Len int
	// Enum maps an enum's names to their values (encoded as u32).
	Enum map[string]uint32
}

var scalarBits = map[string]int{
	"bool": 8, "u8": 8, "u16": 16, "u32": 32, "u64": 64,
	"i8": 8, "i16": 16, "i32": 32, "i64": 64,
	"be16": 16, "be32": 32, "be64": 64,
}

// netSizes are the encoded sizes of the network types. cidr and cidr6
// are LPM trie keys: a u32 prefix length (host order) and the address.
var netSizes = map[string]int{"ipv4": 4, "ipv6": 16, "mac": 6, "cidr": 8, "cidr6": 20, "enum": 4}

// MaxStringLen bounds string<N>.
const MaxStringLen = 256

const typeList = "bool, u8, u16, u32, u64, i8, i16, i32, i64, be16, be32, be64, ipv4, ipv6, mac, cidr, cidr6, string<N>, enum, or list<…> of one"

// ParseType parses "u16", "string<16>" or "list<u16>". An enum's values
// come from its parameter (Param.TypeOf).
func ParseType(s string) (Type, error) {
	t := Type{Scalar: s}
	if inner, ok := strings.CutPrefix(s, "list<"); ok && strings.HasSuffix(inner, ">") {
		t = Type{Scalar: strings.TrimSuffix(inner, ">"), List: true}
	}
	if n, ok := strings.CutPrefix(t.Scalar, "string<"); ok && strings.HasSuffix(n, ">") {
		l, err := strconv.Atoi(strings.TrimSuffix(n, ">"))
		if err != nil || l < 2 || l > MaxStringLen || strings.HasPrefix(n, "0") {
			return Type{}, fmt.Errorf("unknown type %q (string<N> takes a size N from 2 to %d bytes, the NUL included)", s, MaxStringLen)
		}
		t.Scalar, t.Len = "string", l
		return t, nil
	}
	if _, ok := scalarBits[t.Scalar]; !ok && netSizes[t.Scalar] == 0 {
		return Type{}, fmt.Errorf("unknown type %q (want %s)", s, typeList)
	}
	return t, nil
}

// TypeOf is the parameter's type, an enum's values included.
func (p *Param) TypeOf() (Type, error) {
	t, err := ParseType(p.Type)
	if err != nil {
		return t, err
	}
	if t.Scalar == "enum" {
		if len(p.Values) == 0 {
			return Type{}, fmt.Errorf("an enum needs values: {NAME: NUMBER, …}")
		}
		t.Enum = p.Values
	}
	return t, nil
}

// Size is the encoded size of one scalar in bytes.
func (t Type) Size() int {
	if t.Scalar == "string" {
		return t.Len
	}
	if n := netSizes[t.Scalar]; n > 0 {
		return n
	}
	return scalarBits[t.Scalar] / 8
}

func (t Type) String() string {
	s := t.Scalar
	if s == "string" {
		s = fmt.Sprintf("string<%d>", t.Len)
	}
	if t.List {
		return "list<" + s + ">"
	}
	return s
}

// Encode checks v against the type and returns each scalar encoded in the
// host's byte order, as BPF maps and variables hold it.
func (t Type) Encode(v any) ([][]byte, error) {
	if !t.List {
		b, err := t.encodeScalar(v)
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("expected a list of %s, got %s", t.Scalar, describe(v))
	}
	out := make([][]byte, 0, len(items))
	for i, item := range items {
		b, err := t.encodeScalar(item)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// GoValue returns the scalar as the Go type of matching size, for APIs
// (such as ebpf.VariableSpec.Set) that take typed values; types that are
// not integers of 1, 2, 4 or 8 bytes come back as their bytes.
func (t Type) GoValue(v any) (any, error) {
	b, err := t.encodeScalar(v)
	if err != nil {
		return nil, err
	}
	switch len(b) {
	case 1:
		return b[0], nil
	case 2:
		return binary.NativeEndian.Uint16(b), nil
	case 4:
		return binary.NativeEndian.Uint32(b), nil
	case 8:
		return binary.NativeEndian.Uint64(b), nil
	}
	// Addresses, strings, prefixes: the bytes as they are.
	return b, nil
}

func (t Type) encodeScalar(v any) ([]byte, error) {
	if netSizes[t.Scalar] > 0 || t.Scalar == "string" {
		return t.encodeNet(v)
	}
	if t.Scalar == "bool" {
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("expected bool, got %s", describe(v))
		}
		if b {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	}
	n, err := toInt(v)
	if err != nil {
		return nil, fmt.Errorf("expected %s, got %s", t.Scalar, describe(v))
	}
	bits := scalarBits[t.Scalar]
	var lo, hi *big.Int
	if t.Scalar[0] == 'u' || t.Scalar[0] == 'b' {
		lo = big.NewInt(0)
		hi = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits)), big.NewInt(1))
	} else {
		hi = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits-1)), big.NewInt(1))
		lo = new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), uint(bits-1)))
	}
	if n.Cmp(lo) < 0 || n.Cmp(hi) > 0 {
		return nil, fmt.Errorf("%s out of range for %s [%s, %s]", n, t.Scalar, lo, hi)
	}
	var u uint64
	if n.Sign() < 0 {
		u = uint64(n.Int64())
	} else {
		u = n.Uint64()
	}
	out := make([]byte, 8)
	if t.Scalar[0] == 'b' { // beNN: network byte order
		binary.BigEndian.PutUint64(out, u)
		return out[8-bits/8:], nil
	}
	binary.NativeEndian.PutUint64(out, u)
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 { // little endian: low bytes first
		return out[:bits/8], nil
	}
	return out[8-bits/8:], nil
}

func toInt(v any) (*big.Int, error) {
	switch x := v.(type) {
	case json.Number:
		n, ok := new(big.Int).SetString(x.String(), 10)
		if !ok {
			return nil, fmt.Errorf("not an integer")
		}
		return n, nil
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("not an integer")
		}
		n, _ := big.NewFloat(x).Int(nil)
		return n, nil
	case int:
		return big.NewInt(int64(x)), nil
	case int64:
		return big.NewInt(x), nil
	case uint64:
		return new(big.Int).SetUint64(x), nil
	}
	return nil, fmt.Errorf("not an integer")
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("bool %v", x)
	case json.Number:
		return "number " + x.String()
	case float64:
		return fmt.Sprintf("number %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

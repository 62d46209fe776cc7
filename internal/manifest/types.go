package manifest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// Type is a parameter type: a fixed-size scalar, or a list of them.
type Type struct {
	Scalar string // bool, u8, u16, u32, u64, i8, i16, i32, i64
	List   bool
}

var scalarBits = map[string]int{
	"bool": 8, "u8": 8, "u16": 16, "u32": 32, "u64": 64,
	"i8": 8, "i16": 16, "i32": 32, "i64": 64,
}

// ParseType parses "u16" or "list<u16>".
func ParseType(s string) (Type, error) {
	t := Type{Scalar: s}
	if inner, ok := strings.CutPrefix(s, "list<"); ok && strings.HasSuffix(inner, ">") {
		t = Type{Scalar: strings.TrimSuffix(inner, ">"), List: true}
	}
	if _, ok := scalarBits[t.Scalar]; !ok {
		return Type{}, fmt.Errorf("unknown type %q (want bool, u8, u16, u32, u64, i8, i16, i32, i64 or list<…> of one)", s)
	}
	return t, nil
}

// Size is the encoded size of one scalar in bytes.
func (t Type) Size() int { return scalarBits[t.Scalar] / 8 }

func (t Type) String() string {
	if t.List {
		return "list<" + t.Scalar + ">"
	}
	return t.Scalar
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
// (such as ebpf.VariableSpec.Set) that take typed values.
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
	default:
		return binary.NativeEndian.Uint64(b), nil
	}
}

func (t Type) encodeScalar(v any) ([]byte, error) {
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
	if t.Scalar[0] == 'u' {
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

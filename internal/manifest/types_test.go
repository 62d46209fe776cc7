package manifest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Type
		size int
	}{
		{"bool", Type{Scalar: "bool"}, 1},
		{"u8", Type{Scalar: "u8"}, 1},
		{"u16", Type{Scalar: "u16"}, 2},
		{"u32", Type{Scalar: "u32"}, 4},
		{"u64", Type{Scalar: "u64"}, 8},
		{"i8", Type{Scalar: "i8"}, 1},
		{"i16", Type{Scalar: "i16"}, 2},
		{"i32", Type{Scalar: "i32"}, 4},
		{"i64", Type{Scalar: "i64"}, 8},
		{"list<u16>", Type{Scalar: "u16", List: true}, 2},
		{"list<i64>", Type{Scalar: "i64", List: true}, 8},
		{"list<bool>", Type{Scalar: "bool", List: true}, 1},
	} {
		got, err := ParseType(tc.in)
		if err != nil {
			t.Errorf("ParseType(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseType(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if got.Size() != tc.size {
			t.Errorf("%s.Size() = %d, want %d", tc.in, got.Size(), tc.size)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
	for _, in := range []string{"", "u128", "U8", "int", "uint32", "string", "float", "list<>", "list<u8", "list<list<u8>>", "list <u8>", " u8", "u8 ", "list<u8>>", "[]u8"} {
		if got, err := ParseType(in); err == nil {
			t.Errorf("ParseType(%q) = %+v, want error", in, got)
		} else if !strings.Contains(err.Error(), "unknown type") {
			t.Errorf("ParseType(%q) error %q does not say unknown type", in, err)
		}
	}
}

func le(u uint64, n int) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, u)
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return b[:n]
	}
	return b[8-n:]
}

// TestEncodeRanges checks both sides of every integer type's range, in
// each number representation the decoder or callers produce.
func TestEncodeRanges(t *testing.T) {
	for _, tc := range []struct {
		scalar string
		min    string
		max    string
		below  string
		above  string
		size   int
	}{
		{"u8", "0", "255", "-1", "256", 1},
		{"u16", "0", "65535", "-1", "65536", 2},
		{"u32", "0", "4294967295", "-1", "4294967296", 4},
		{"u64", "0", "18446744073709551615", "-1", "18446744073709551616", 8},
		{"i8", "-128", "127", "-129", "128", 1},
		{"i16", "-32768", "32767", "-32769", "32768", 2},
		{"i32", "-2147483648", "2147483647", "-2147483649", "2147483648", 4},
		{"i64", "-9223372036854775808", "9223372036854775807", "-9223372036854775809", "9223372036854775808", 8},
	} {
		t.Run(tc.scalar, func(t *testing.T) {
			typ, err := ParseType(tc.scalar)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []string{tc.min, tc.max, "0", "1"} {
				out, err := typ.Encode(json.Number(v))
				if err != nil {
					t.Errorf("Encode(%s): %v", v, err)
					continue
				}
				if len(out) != 1 || len(out[0]) != tc.size {
					t.Errorf("Encode(%s) = %x, want one %d-byte item", v, out, tc.size)
				}
			}
			for _, v := range []string{tc.below, tc.above} {
				_, err := typ.Encode(json.Number(v))
				if err == nil {
					t.Errorf("Encode(%s) accepted an out-of-range value", v)
				} else if !strings.Contains(err.Error(), "out of range for "+tc.scalar) || !strings.Contains(err.Error(), "["+tc.min+", "+tc.max+"]") {
					t.Errorf("Encode(%s) error %q does not give the range", v, err)
				}
			}
			// Max encodes as all ones for unsigned, 0x7f.. for signed.
			out, _ := typ.Encode(json.Number(tc.max))
			if tc.scalar[0] == 'u' {
				if !bytes.Equal(out[0], bytes.Repeat([]byte{0xff}, tc.size)) {
					t.Errorf("max encodes as %x", out[0])
				}
			} else {
				if !bytes.Equal(out[0], le(math.MaxUint64>>(64-8*tc.size+1), tc.size)) {
					t.Errorf("max encodes as %x", out[0])
				}
				// Negative values are two's complement.
				neg, err := typ.Encode(json.Number("-1"))
				if err != nil || !bytes.Equal(neg[0], bytes.Repeat([]byte{0xff}, tc.size)) {
					t.Errorf("-1 encodes as %x, %v", neg, err)
				}
				minOut, _ := typ.Encode(json.Number(tc.min))
				if !bytes.Equal(minOut[0], le(1<<(8*tc.size-1), tc.size)) {
					t.Errorf("min encodes as %x", minOut[0])
				}
			}
		})
	}
}

func TestEncodeValues(t *testing.T) {
	u16, _ := ParseType("u16")
	u32, _ := ParseType("u32")
	i32, _ := ParseType("i32")
	u64, _ := ParseType("u64")
	boolT, _ := ParseType("bool")
	for _, tc := range []struct {
		typ  Type
		v    any
		want []byte
	}{
		{u16, json.Number("8080"), le(8080, 2)},
		{u16, float64(8080), le(8080, 2)},
		{u16, 8080, le(8080, 2)},
		{u16, int64(8080), le(8080, 2)},
		{u16, uint64(8080), le(8080, 2)},
		{u16, float64(65535), le(65535, 2)},
		{u32, json.Number("305419896"), le(0x12345678, 4)},
		{i32, int(-2), le(0xfffffffe, 4)},
		{i32, float64(-2), le(0xfffffffe, 4)},
		{u64, uint64(math.MaxUint64), le(math.MaxUint64, 8)},
		{boolT, true, []byte{1}},
		{boolT, false, []byte{0}},
	} {
		out, err := tc.typ.Encode(tc.v)
		if err != nil {
			t.Errorf("%s.Encode(%#v): %v", tc.typ, tc.v, err)
			continue
		}
		if len(out) != 1 || !bytes.Equal(out[0], tc.want) {
			t.Errorf("%s.Encode(%#v) = %x, want %x", tc.typ, tc.v, out, tc.want)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		v    any
		want string
	}{
		{"u8", json.Number("1.5"), "expected u8, got number 1.5"},
		{"u8", float64(1.5), "expected u8, got number 1.5"},
		{"i16", json.Number("-0.5"), "expected i16, got number -0.5"},
		{"u32", json.Number("1e3"), "expected u32, got number 1e3"},
		{"u32", math.Inf(1), "expected u32, got number +Inf"},
		{"u32", math.Inf(-1), "expected u32"},
		{"u32", math.NaN(), "expected u32, got number NaN"},
		{"u32", float64(1 << 40), "out of range for u32"},
		{"u8", float64(-1), "-1 out of range for u8"},
		{"u64", int(-1), "-1 out of range for u64"},
		{"u64", int64(math.MinInt64), "out of range for u64"},
		{"i64", uint64(math.MaxUint64), "out of range for i64"},
		{"u16", "80", `expected u16, got string "80"`},
		{"u16", true, "expected u16, got bool true"},
		{"u16", nil, "expected u16, got null"},
		{"u16", []any{json.Number("1")}, "expected u16, got a list"},
		{"u16", map[string]any{"a": 1}, "expected u16, got an object"},
		{"u16", uint8(3), "expected u16, got uint8"},
		{"u16", json.Number(""), "expected u16"},
		{"u16", json.Number("0x10"), "expected u16"},
		{"bool", json.Number("1"), "expected bool, got number 1"},
		{"bool", "true", `expected bool, got string "true"`},
		{"bool", nil, "expected bool, got null"},
		{"list<u16>", json.Number("80"), "expected a list of u16, got number 80"},
		{"list<u16>", "80,443", "expected a list of u16, got string"},
		{"list<u16>", nil, "expected a list of u16, got null"},
		{"list<u16>", []any{json.Number("80"), json.Number("-1")}, "item 1: -1 out of range for u16"},
		{"list<u16>", []any{json.Number("80"), "443"}, `item 1: expected u16, got string "443"`},
		{"list<u16>", []any{[]any{json.Number("80")}}, "item 0: expected u16, got a list"},
		{"list<bool>", []any{true, json.Number("0")}, "item 1: expected bool"},
	} {
		typ, err := ParseType(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		out, err := typ.Encode(tc.v)
		if err == nil {
			t.Errorf("%s.Encode(%#v) = %x, want error", tc.typ, tc.v, out)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s.Encode(%#v) error %q does not contain %q", tc.typ, tc.v, err, tc.want)
		}
	}
}

func TestEncodeList(t *testing.T) {
	typ, _ := ParseType("list<u16>")
	out, err := typ.Encode([]any{json.Number("80"), float64(443), json.Number("80")})
	if err != nil {
		t.Fatal(err)
	}
	// Order and duplicates are kept: comparing as a set is the caller's job.
	want := [][]byte{le(80, 2), le(443, 2), le(80, 2)}
	if len(out) != len(want) {
		t.Fatalf("Encode = %x, want %x", out, want)
	}
	for i := range want {
		if !bytes.Equal(out[i], want[i]) {
			t.Errorf("item %d = %x, want %x", i, out[i], want[i])
		}
	}
	out, err = typ.Encode([]any{})
	if err != nil || len(out) != 0 {
		t.Errorf("empty list: %x, %v", out, err)
	}
	// A list type does not take a bare scalar, and a scalar type does not
	// take a list.
	if _, err := typ.Encode(json.Number("80")); err == nil {
		t.Error("list<u16> accepted a scalar")
	}
}

func TestGoValue(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		v    any
		want any
	}{
		{"bool", true, uint8(1)},
		{"bool", false, uint8(0)},
		{"u8", json.Number("200"), uint8(200)},
		{"i8", json.Number("-1"), uint8(0xff)},
		{"u16", json.Number("8080"), uint16(8080)},
		{"i16", json.Number("-2"), uint16(0xfffe)},
		{"u32", json.Number("4294967295"), uint32(math.MaxUint32)},
		{"i32", json.Number("-2147483648"), uint32(0x80000000)},
		{"u64", json.Number("18446744073709551615"), uint64(math.MaxUint64)},
		{"i64", json.Number("-1"), uint64(math.MaxUint64)},
		{"i64", json.Number("42"), uint64(42)},
	} {
		typ, err := ParseType(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		got, err := typ.GoValue(tc.v)
		if err != nil {
			t.Errorf("%s.GoValue(%v): %v", tc.typ, tc.v, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s.GoValue(%v) = %#v (%T), want %#v (%T)", tc.typ, tc.v, got, got, tc.want, tc.want)
		}
		// The Go value has the same size as the encoding.
		if n := binary.Size(got); n != typ.Size() {
			t.Errorf("%s.GoValue is %d bytes, type is %d", tc.typ, n, typ.Size())
		}
	}
	u8, _ := ParseType("u8")
	if _, err := u8.GoValue(json.Number("256")); err == nil {
		t.Error("GoValue accepted an out-of-range value")
	}
	b, _ := ParseType("bool")
	if _, err := b.GoValue("yes"); err == nil {
		t.Error("GoValue accepted a string for bool")
	}
}

// TestEncodeFromYAML checks the values the decoder really produces, as a
// manifest default and through Parse.
func TestEncodeFromYAML(t *testing.T) {
	for _, tc := range []struct {
		typ, def string
		ok       bool
	}{
		{"u16", "65535", true},
		{"u16", "65536", false},
		{"u16", "-1", false},
		{"u16", "1.5", false},
		{"u16", `"80"`, false},
		{"u16", "true", false},
		{"i8", "-128", true},
		{"i8", "-129", false},
		{"u64", "18446744073709551615", true},
		{"u64", "18446744073709551616", false},
		{"i64", "-9223372036854775808", true},
		{"bool", "true", true},
		{"bool", "1", false},
		{"list<u16>", "[80, 443]", true},
		{"list<u16>", "[80, 70000]", false},
		{"list<u16>", "80", false},
	} {
		doc := strings.Replace(validYAML, "  - name: limit\n    type: u32\n    default: 7\n", "  - name: limit\n    type: "+tc.typ+"\n    default: "+tc.def+"\n", 1)
		if strings.HasPrefix(tc.typ, "list") {
			doc = strings.Replace(doc, "as: value, key: 3", "as: keys", 1)
		}
		_, err := Parse([]byte(doc))
		if tc.ok && err != nil {
			t.Errorf("type %s default %s: %v", tc.typ, tc.def, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "params[1].default: ")) {
			t.Errorf("type %s default %s: got %v, want a params[1].default error", tc.typ, tc.def, err)
		}
	}
}

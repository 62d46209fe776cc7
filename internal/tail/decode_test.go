package tail

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestDecode builds a record struct in BTF, keeps it the way leafd does
// (raw BTF of the struct alone), and decodes a record of every kind of
// field: unsigned, signed, bool, char array, byte array, enum, nested
// struct, array of integers, and formatted fields.
func TestDecode(t *testing.T) {
	u8 := &btf.Int{Name: "__u8", Size: 1}
	char := &btf.Int{Name: "char", Size: 1, Encoding: btf.Char}
	u16 := &btf.Int{Name: "__u16", Size: 2}
	u32 := &btf.Int{Name: "__u32", Size: 4}
	s32 := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	boolT := &btf.Int{Name: "_Bool", Size: 1, Encoding: btf.Bool}
	verdict := &btf.Enum{Name: "verdict", Size: 4, Values: []btf.EnumValue{{Name: "DROP", Value: 1}, {Name: "PASS", Value: 2}}}
	inner := &btf.Struct{Name: "pair", Size: 4, Members: []btf.Member{{Name: "a", Type: u16}, {Name: "b", Type: u16, Offset: 16}}}
	ev := &btf.Struct{Name: "event", Size: 40, Members: []btf.Member{
		{Name: "saddr", Type: u32, Offset: 0},
		{Name: "dport", Type: u16, Offset: 32},
		{Name: "ok", Type: boolT, Offset: 48},
		{Name: "delta", Type: s32, Offset: 64},
		{Name: "comm", Type: &btf.Array{Type: char, Index: u32, Nelems: 8}, Offset: 96},
		{Name: "mac", Type: &btf.Array{Type: u8, Index: u32, Nelems: 6}, Offset: 160},
		{Name: "verdict", Type: verdict, Offset: 224},
		{Name: "pair", Type: inner, Offset: 256},
		{Name: "small", Type: &btf.Array{Type: u16, Index: u32, Nelems: 2}, Offset: 288},
	}}
	b, err := btf.NewBuilder([]btf.Type{ev}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := LoadTypes(raw)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := MarshalType(spec, "event")
	if err != nil {
		t.Fatal(err)
	}
	spec, err = LoadTypes(kept)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(spec, "event", map[string]string{"saddr": "ipv4", "dport": "port"})
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 40)
	copy(rec[0:], []byte{10, 196, 0, 3})
	binary.BigEndian.PutUint16(rec[4:], 443)
	rec[6] = 1
	binary.NativeEndian.PutUint32(rec[8:], uint32(0xfffffffe)) // -2
	copy(rec[12:], "curl\x00xx")
	copy(rec[20:], []byte{2, 0, 0x5e, 0, 0, 1})
	binary.NativeEndian.PutUint32(rec[28:], 2)
	binary.NativeEndian.PutUint16(rec[32:], 7)
	binary.NativeEndian.PutUint16(rec[34:], 9)
	binary.NativeEndian.PutUint16(rec[36:], 1)
	binary.NativeEndian.PutUint16(rec[38:], 2)
	got, err := dec.Decode(append(rec, 0xff)) // a longer record decodes its struct
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"saddr": "10.196.0.3", "dport": "443", "ok": true, "delta": int64(-2), "comm": "curl",
		"mac": "02005e000001", "verdict": "PASS", "pair": map[string]any{"a": uint64(7), "b": uint64(9)},
		"small": []any{uint64(1), uint64(2)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%#v\nwant\n%#v", got, want)
	}
	if _, err := dec.Decode(rec[:39]); err == nil {
		t.Error("a short record decoded")
	}
	if _, err := NewDecoder(spec, "event", map[string]string{"nope": "ipv4"}); err == nil {
		t.Error("a format for a missing field was accepted")
	}
	if _, err := NewDecoder(spec, "nothere", nil); err == nil {
		t.Error("a missing type was accepted")
	}
}

// Package tail streams the records a BPF program writes to a ring buffer
// or perf event array, each decoded field by field from the record's
// struct in the program's BTF (as Inspektor Gadget's `ig run` shows
// them), and counts what it read and what was lost.
package tail

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/nativeint"
)

// maxDepth bounds nested structs and arrays: BTF from a package is input.
const maxDepth = 8

// Decoder turns raw records into field → value maps.
type Decoder struct {
	typ     *btf.Struct
	size    int
	formats map[string]string
}

// NewDecoder finds the struct named name in spec. formats shows fields
// (by name, top level) in one of manifest.Formats.
func NewDecoder(spec *btf.Spec, name string, formats map[string]string) (*Decoder, error) {
	var s *btf.Struct
	if err := spec.TypeByName(name, &s); err != nil {
		return nil, fmt.Errorf("record type struct %s: %w", name, err)
	}
	size, err := btf.Sizeof(s)
	if err != nil {
		return nil, fmt.Errorf("record type struct %s: %w", name, err)
	}
	for f := range formats {
		if !hasMember(s, f) {
			return nil, fmt.Errorf("record type struct %s has no field %q (formats)", name, f)
		}
	}
	return &Decoder{typ: s, size: size, formats: formats}, nil
}

func hasMember(s *btf.Struct, name string) bool {
	for _, m := range s.Members {
		if m.Name == name {
			return true
		}
	}
	return false
}

// Size is the record struct's size.
func (d *Decoder) Size() int { return d.size }

// Decode decodes one record. A record shorter than the struct is an
// error; bytes after it (variable-length tails) are ignored.
func (d *Decoder) Decode(raw []byte) (map[string]any, error) {
	if len(raw) < d.size {
		return nil, fmt.Errorf("record of %d bytes, struct %s is %d", len(raw), d.typ.Name, d.size)
	}
	return decodeStruct(d.typ, raw[:d.size], d.formats, 0), nil
}

func decodeStruct(s *btf.Struct, b []byte, formats map[string]string, depth int) map[string]any {
	out := make(map[string]any, len(s.Members))
	for i, m := range s.Members {
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("_%d", i)
		}
		off := int(m.Offset.Bytes())
		if m.BitfieldSize > 0 {
			out[name] = bitfield(b, uint32(m.Offset), uint32(m.BitfieldSize))
			continue
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil || off+size > len(b) {
			continue
		}
		field := b[off : off+size]
		if f := formats[m.Name]; f != "" {
			out[name] = manifest.Format(f, field)
			continue
		}
		out[name] = decodeValue(m.Type, field, depth+1)
	}
	return out
}

func decodeValue(t btf.Type, b []byte, depth int) any {
	if depth > maxDepth {
		return fmt.Sprintf("%x", b)
	}
	switch u := btf.UnderlyingType(t).(type) {
	case *btf.Int:
		return decodeInt(u, b)
	case *btf.Enum:
		n := nativeint.Uint(b)
		for _, v := range u.Values {
			if v.Value == n {
				return v.Name
			}
		}
		return n
	case *btf.Array:
		return decodeArray(u, b, depth)
	case *btf.Struct:
		return decodeStruct(u, b, nil, depth)
	case *btf.Pointer:
		return fmt.Sprintf("0x%x", nativeint.Uint(b))
	}
	return fmt.Sprintf("%x", b)
}

func decodeInt(i *btf.Int, b []byte) any {
	n := nativeint.Uint(b)
	switch {
	case i.Encoding&btf.Bool != 0:
		return n != 0
	case i.Encoding&btf.Signed != 0:
		shift := 64 - 8*uint(len(b))
		return int64(n<<shift) >> shift
	}
	return n
}

// decodeArray shows char arrays as strings, other byte arrays as hex,
// and anything else element by element.
func decodeArray(a *btf.Array, b []byte, depth int) any {
	elem, ok := btf.UnderlyingType(a.Type).(*btf.Int)
	if ok && elem.Size == 1 {
		if elem.Encoding&btf.Char != 0 || elem.Encoding&btf.Signed != 0 {
			for i, c := range b {
				if c == 0 {
					return string(b[:i])
				}
			}
			return string(b)
		}
		return fmt.Sprintf("%x", b)
	}
	size, err := btf.Sizeof(a.Type)
	if err != nil || size == 0 {
		return fmt.Sprintf("%x", b)
	}
	out := make([]any, 0, len(b)/size)
	for off := 0; off+size <= len(b); off += size {
		out = append(out, decodeValue(a.Type, b[off:off+size], depth+1))
	}
	return out
}

func bitfield(b []byte, offBits, bits uint32) uint64 {
	start := offBits / 8
	var buf [8]byte
	copy(buf[:], b[min(int(start), len(b)):])
	v := binary.NativeEndian.Uint64(buf[:]) >> (offBits % 8)
	if bits >= 64 {
		return v
	}
	return v & (1<<bits - 1)
}

// MarshalType keeps the struct named name (and the types it uses) from
// spec as raw BTF, for a decoder made later without the object: leafd
// stores it with the attachment at apply time, since the BTF the kernel
// keeps for a program holds only its functions' types.
func MarshalType(spec *btf.Spec, name string) ([]byte, error) {
	var s *btf.Struct
	if err := spec.TypeByName(name, &s); err != nil {
		return nil, fmt.Errorf("record type struct %s: %w", name, err)
	}
	b, err := btf.NewBuilder([]btf.Type{s}, nil)
	if err != nil {
		return nil, err
	}
	return b.Marshal(nil, nil)
}

// LoadTypes reads raw BTF made by MarshalType.
func LoadTypes(raw []byte) (*btf.Spec, error) {
	return btf.LoadSpecFromReader(bytes.NewReader(raw))
}

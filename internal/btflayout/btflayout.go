// Package btflayout checks that Go structs mirroring BPF C structs have
// the C layout, read from the object's BTF, so a change on one side that
// is not made on the other fails a test instead of corrupting map data.
package btflayout

import (
	"bytes"
	"fmt"
	"reflect"

	"github.com/cilium/ebpf/btf"
)

// Check compares each Go value's type with the C struct of the same name
// (the map key) in the object: size, member count and every offset.
func Check(object []byte, structs map[string]any) error {
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(object))
	if err != nil {
		return err
	}
	for name, goValue := range structs {
		var s *btf.Struct
		if err := spec.TypeByName(name, &s); err != nil {
			return fmt.Errorf("struct %s: %w", name, err)
		}
		gt := reflect.TypeOf(goValue)
		if int(s.Size) != int(gt.Size()) || len(s.Members) != gt.NumField() {
			return fmt.Errorf("struct %s: C has %d bytes and %d members, Go %s %d bytes and %d fields", name, s.Size, len(s.Members), gt, gt.Size(), gt.NumField())
		}
		for i, m := range s.Members {
			if off := gt.Field(i).Offset; uint64(m.Offset.Bytes()) != uint64(off) {
				return fmt.Errorf("struct %s: member %s at %d, Go field %s at %d", name, m.Name, m.Offset.Bytes(), gt.Field(i).Name, off)
			}
		}
	}
	return nil
}

// Package nativeint reads and writes the unsigned integers BPF maps hold
// as keys and values: 1, 2, 4 or 8 bytes in the host's byte order. The
// metrics exporter, l3afd's monitor_maps and leaf tail all read them, so
// the byte order is decided in one place.
package nativeint

import "encoding/binary"

// Uint reads b as an unsigned integer in the host's byte order. Other
// lengths than 1, 2, 4 and 8 read as their first eight bytes, the missing
// ones zero.
func Uint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.NativeEndian.Uint16(b))
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	case 8:
		return binary.NativeEndian.Uint64(b)
	}
	var buf [8]byte
	copy(buf[:], b)
	return binary.NativeEndian.Uint64(buf[:])
}

// Bytes returns v as a size-byte integer in the host's byte order (its
// low size bytes); size is at most 8.
func Bytes(v uint64, size int) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, v)
	if littleEndian {
		return b[:size]
	}
	return b[8-size:]
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

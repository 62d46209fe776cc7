package nativeint

import (
	"encoding/binary"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{1, 2, 4, 8} {
		v := uint64(0x0102030405060708) & (1<<(8*size) - 1)
		if size == 8 {
			v = 0x0102030405060708
		}
		b := Bytes(v, size)
		if len(b) != size {
			t.Fatalf("Bytes(%#x, %d) has %d bytes", v, size, len(b))
		}
		if got := Uint(b); got != v {
			t.Errorf("Uint(Bytes(%#x, %d)) = %#x", v, size, got)
		}
	}
}

func TestHostOrder(t *testing.T) {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, 7001)
	if got := Uint(b); got != 7001 {
		t.Errorf("Uint(%v) = %d, want 7001", b, got)
	}
	if got := Uint(b[:3]); littleEndian && got != 7001 {
		t.Errorf("Uint of 3 bytes %v = %d, want 7001 (zero-padded)", b[:3], got)
	}
	long := append(Bytes(42, 8), 0xff, 0xff)
	if got := Uint(long); got != 42 {
		t.Errorf("Uint of 10 bytes = %d, want the first eight: 42", got)
	}
}

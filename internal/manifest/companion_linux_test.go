package manifest

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The capability numbers are written out so the CLI builds everywhere;
// they must be the kernel's.
func TestCapabilityNumbersMatchLinux(t *testing.T) {
	want := map[string]uintptr{
		"CAP_BPF": unix.CAP_BPF, "CAP_PERFMON": unix.CAP_PERFMON, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
		"CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
		"CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE,
		"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK,
		"CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
	}
	if len(want) != len(capabilities) {
		t.Fatalf("capabilities has %d names, the test knows %d", len(capabilities), len(want))
	}
	for name, v := range want {
		if got, ok := capabilities[name]; !ok || got != v {
			t.Errorf("%s = %d, kernel has %d", name, got, v)
		}
	}
}

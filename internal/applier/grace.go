package applier

import (
	"time"

	"golang.org/x/sys/unix"
)

// membarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL, which returns only after
// the kernel's synchronize_rcu(): every CPU has left the RCU read-side
// critical sections it was in when the call started.
const membarrierCmdGlobal = 1

// waitForPacketsInFlight returns once no packet that entered a hook before
// the call can still be running a program there. XDP and TC programs, tail
// calls included, run inside one RCU read-side critical section per packet,
// so an RCU grace period is exactly that.
//
// This matters for chains: when leafd retires the old instances after a
// switch, unpinning their PROG_ARRAYs makes the kernel empty them, and a
// packet still travelling through the old chain (a vCPU descheduled by the
// hypervisor can hold one there for milliseconds) would find its next
// member gone and skip the rest of the chain.
func waitForPacketsInFlight() {
	_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0)
	if errno != 0 {
		// MEMBARRIER_CMD_GLOBAL is refused on nohz_full kernels; a pause
		// far longer than any packet's trip through a chain stands in.
		time.Sleep(100 * time.Millisecond)
	}
}

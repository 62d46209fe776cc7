package applier

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/planner"
)

// TestFDBudget checks that a plan needing more descriptors than are left
// is refused before anything loads, as a limit, and one that fits is not.
func TestFDBudget(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	open, _ := os.ReadDir("/proc/self/fd")
	low := lim
	low.Cur = uint64(len(open) + 64 + 100)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	plan := func(n int) *planner.Plan {
		p := &planner.Plan{}
		for i := 0; i < n; i++ {
			spec := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{"a": {}, "b": {}, "c": {}}}
			p.Actions = append(p.Actions, &planner.Action{Name: fmt.Sprint(i), Kind: planner.Create, Desired: &planner.Resolved{Spec: spec}})
		}
		return p
	}
	if err := checkFDBudget(plan(10)); err != nil { // 50 descriptors
		t.Fatalf("10 loads within a budget of about 100: %v", err)
	}
	err := checkFDBudget(plan(1000)) // 5000 descriptors
	var errs desired.Errors
	if !errors.As(err, &errs) || errs.Worst() != desired.KindLimit || !strings.Contains(err.Error(), "file descriptors") {
		t.Fatalf("1000 loads: %v, want a limit error about file descriptors", err)
	}
}

package planner

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/trust"
)

// TestResolveErrorKinds: a resolution failure keeps its kind and its
// cause, and names the attachment and field, whichever repository or
// kernel probe refused.
func TestResolveErrorKinds(t *testing.T) {
	ensureTracefs(t)
	// A policy that requires an author signature, over packages that
	// have none.
	signedOnly := repository.Set{&trust.Repository{Inner: builtin(t), Policy: &trust.Policy{}}}
	open := repository.Set{builtin(t)}
	for _, tc := range []struct {
		name  string
		repos repository.Set
		doc   string
		field string
		kind  string
		cause error
	}{
		{"not found", open, "package: nope@1.0.0\n      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}", "package", desired.KindNotFound, repository.ErrNotFound},
		{"unsigned", signedOnly, "package: execcount@1.0.0\n      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}", "package", desired.KindTrust, repository.ErrUntrusted},
		{"other content than pinned", open, "package: execcount@1.0.0@sha256:" + strings.Repeat("0", 64) + "\n      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}", "package", desired.KindTrust, repository.ErrUntrusted},
		{"no kprobes", open, "package: callcount@1.0.0\n      program: count_kprobe\n      hook: {type: kprobe, function: do_sys_openat2}", "hook.type", desired.KindFeatureMissing, ebpf.ErrNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kind == desired.KindFeatureMissing && hook.KprobeSupported() == nil {
				t.Skip("this kernel has kprobes")
			}
			_, err := Resolve(parse(t, "\n    - name: x\n      "+tc.doc+"\n"), tc.repos, Options{})
			var errs desired.Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("got %v", err)
			}
			if e := errs[0]; e.Attachment != "x" || e.Field != tc.field || e.Kind != tc.kind || !errors.Is(err, tc.cause) {
				t.Fatalf("got %+v (cause kept: %v), want field %s kind %s", e, errors.Is(err, tc.cause), tc.field, tc.kind)
			}
		})
	}
}

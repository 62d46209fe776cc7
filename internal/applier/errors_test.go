package applier

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestErrorKinds: what fails at attach or commit is classified by its
// cause, through the wrapping on the way.
func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{fmt.Errorf("attach: %w", hook.ErrForeign), desired.KindConflict},
		{fmt.Errorf("tcx: %w", unix.ESTALE), desired.KindConflict},
		// leafd's own pin colliding is leafd's failure, not a conflict.
		{fmt.Errorf("rename pin: %w", &os.LinkError{Op: "rename", Err: unix.EEXIST}), desired.KindInternal},
		{fmt.Errorf("link: %w", ebpf.ErrNotSupported), desired.KindFeatureMissing},
		{&paramError{fmt.Errorf("set parameters: %w", errors.New("value too big"))}, ""},
		{fmt.Errorf("map: %w", unix.E2BIG), desired.KindLimit},
	} {
		if got := errorKind(tc.err); got != tc.kind {
			t.Errorf("errorKind(%v) = %q, want %q", tc.err, got, tc.kind)
		}
	}
	pe := &paramError{fmt.Errorf("set parameters: %w", &namedParamError{"ports", unix.ENOSPC})}
	if k := errorKind(pe); k != "" || commitField(k, pe) != "params.ports" || !strings.Contains(pe.Error(), "parameter ports: ") {
		t.Errorf("a map parameter that does not fit: kind %q field %q (%v)", k, commitField(k, pe), pe)
	}
	if got := loadErrorKind(fmt.Errorf("load: %w", unix.EMFILE)); got != desired.KindLimit {
		t.Errorf("EMFILE at load: %q", got)
	}
}

// TestVerifierRefusal loads a program the verifier refuses (it reads
// past the stack): the error is of kind verifier, keeps the
// *ebpf.VerifierError for errors.As, and carries the end of the log,
// bounded.
func TestVerifierRefusal(t *testing.T) {
	testenv.RequireKernel(t)
	spec := &ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMem(asm.R0, asm.R10, 8, asm.DWord),
		asm.Return(),
	}}
	_, err := ebpf.NewProgram(spec)
	if err == nil {
		t.Fatal("the verifier took a read past the stack")
	}
	r := &planner.Resolved{Package: &repository.Package{Manifest: &manifest.Manifest{Name: "bad", Version: "1.0.0"}}, Program: &manifest.Program{Name: "p"}}
	e := loadFailure("a", "package", explainLoadError(r, err))
	var ve *ebpf.VerifierError
	if e.Kind != desired.KindVerifier || !errors.As(e, &ve) || e.Attachment != "a" || e.Field != "package" {
		t.Fatalf("got %+v", e)
	}
	if len(e.VerifierLog) == 0 || len(e.VerifierLog) > verifierLogLines+1 || !strings.Contains(e.Error(), "rejected by the verifier") {
		t.Fatalf("verifier log %q, error %v", e.VerifierLog, e)
	}
}

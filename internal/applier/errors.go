package applier

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/planner"
)

// verifierLogLines is how much of the verifier's log an error keeps: the
// end, where the rejected instruction and the reason are.
const verifierLogLines = 12

// verifierError is a program the kernel's verifier refused, with the
// end of its log.
type verifierError struct {
	pkg, program string
	err          *ebpf.VerifierError
	tail         []string
}

func (e *verifierError) Error() string {
	return fmt.Sprintf("%s: program %s was rejected by the verifier: %v", e.pkg, e.program, e.err.Cause)
}

func (e *verifierError) Unwrap() error { return e.err }

// explainLoadError keeps the verifier's words: the cause and the end of
// its log, where the rejected instruction is.
func explainLoadError(r *planner.Resolved, err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := ve.Log
		if len(log) > verifierLogLines {
			log = append([]string{fmt.Sprintf("(%d earlier lines omitted)", len(log)-verifierLogLines)}, log[len(log)-verifierLogLines:]...)
		}
		return &verifierError{pkg: r.Package.Ref(), program: r.Program.Name, err: ve, tail: log}
	}
	return fmt.Errorf("%s: load program %s: %w", r.Package.Ref(), r.Program.Name, err)
}

// loadFailure is the error of one attachment whose program did not load.
func loadFailure(name, field string, err error) desired.Error {
	e := desired.Error{Attachment: name, Field: field, Message: err.Error(), Kind: loadErrorKind(err), Err: err}
	var ve *verifierError
	if errors.As(err, &ve) {
		e.VerifierLog = ve.tail
	}
	return e
}

// loadErrorKind classifies a failed load: the verifier refused the
// program, the kernel lacks a program or map type it needs, or leafd ran
// out of file descriptors; anything else is the package's problem ("").
func loadErrorKind(err error) string {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE):
		return desired.KindLimit
	case errors.As(err, &ve):
		return desired.KindVerifier
	case errors.Is(err, ebpf.ErrNotSupported):
		return desired.KindFeatureMissing
	}
	return ""
}

// errorKind classifies a failure to attach or commit: a hook held by
// someone else is a conflict (only that: an EEXIST from leafd's own pins
// is leafd's failure, not the client's), a problem with a parameter value is the
// document's, a hook or link type this kernel lacks is a missing
// feature; anything else (bpffs, pins, the kernel refusing an operation
// leaf should have got right) is leafd's own.
func errorKind(err error) string {
	var pe *paramError
	switch {
	case errors.Is(err, hook.ErrForeign), errors.Is(err, unix.ESTALE):
		// ESTALE: another tool changed the TCX hook while leaf attached.
		return desired.KindConflict
	case errors.As(err, &pe):
		return ""
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE), errors.Is(err, unix.ENOSPC), errors.Is(err, unix.E2BIG):
		return desired.KindLimit
	case errors.Is(err, ebpf.ErrNotSupported):
		return desired.KindFeatureMissing
	}
	return desired.KindInternal
}

// namedParamError is a problem writing one map parameter.
type namedParamError struct {
	name string
	err  error
}

func (e *namedParamError) Error() string { return "parameter " + e.name + ": " + e.err.Error() }
func (e *namedParamError) Unwrap() error { return e.err }

// commitField names the part of an attachment a failed commit is about.
func commitField(kind string, err error) string {
	var pe *paramError
	var np *namedParamError
	switch {
	case errors.As(err, &np):
		return "params." + np.name
	case errors.As(err, &pe):
		return "params"
	case kind == desired.KindConflict:
		return "hook"
	case kind == desired.KindFeatureMissing:
		return "hook.type"
	}
	return ""
}

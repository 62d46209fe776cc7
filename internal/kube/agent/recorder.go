package agent

import (
	"context"
	"sync"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/desired"
)

// Recorder is a Host without a kernel: it validates and records what it
// is given and reports every attachment attached. The scale bench runs
// the real agent against it; Refuse makes it refuse attachments the way
// the kernel's verifier would.
type Recorder struct {
	mu      sync.Mutex
	state   *desired.State
	applies int
	seen    map[string]bool
	// Refuse lists attachment names whose apply fails.
	Refuse map[string]string
}

// Apply records st, or refuses it when it names an attachment in Refuse.
func (r *Recorder) Apply(_ context.Context, st *desired.State, dryRun bool) (*v1.ApplyResult, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs desired.Errors
	for _, a := range st.Spec.Attachments {
		if msg, ok := r.Refuse[a.Name]; ok {
			errs = append(errs, desired.Error{Attachment: a.Name, Message: msg})
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if !dryRun {
		r.state = st
		r.applies++
		if r.seen == nil {
			r.seen = map[string]bool{}
		}
		for _, a := range st.Spec.Attachments {
			r.seen[a.Name] = true
		}
	}
	return &v1.ApplyResult{DryRun: dryRun, Changed: true}, nil
}

// Status reports every recorded attachment as attached.
func (r *Recorder) Status() (*v1.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &v1.Status{}
	if r.state == nil {
		return st, nil
	}
	for i, a := range r.state.Spec.Attachments {
		st.Attachments = append(st.Attachments, v1.AttachmentStatus{Name: a.Name, Package: a.Package, HookType: a.Hook.Type,
			Hook: a.Hook.String(), State: "attached", ProgramID: uint32(i + 1)})
	}
	return st, nil
}

// State returns the last state applied and how many applies there were.
func (r *Recorder) State() (*desired.State, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state, r.applies
}

// Seen reports whether an attachment of this name was ever applied.
func (r *Recorder) Seen(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[name]
}

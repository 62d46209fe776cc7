// Package desired defines the desired-state document: the attachments the
// operator wants on this host. It parses the document strictly and checks
// everything that can be checked without the kernel or the repositories.
package desired

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// APIVersion and Kind identify a desired-state document.
const (
	APIVersion = "leaf.dev/v1alpha1"
	Kind       = "HostState"
)

// State is the whole desired state of one host. Applying a State replaces
// the previous one: attachments it does not list are removed.
type State struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

// Metadata names the document.
type Metadata struct {
	Name        string            `json:"name,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Spec lists the attachments.
type Spec struct {
	Attachments []Attachment `json:"attachments"`
}

// Attachment is one program of one package version on one hook.
type Attachment struct {
	// Name identifies the attachment on this host.
	Name string `json:"name"`
	// Package is "name@version", or "name@version@sha256:<hex>" to pin
	// the content.
	Package string `json:"package"`
	// Digest pins the package's content ("sha256:<hex>"), like the third
	// part of Package; set one or the other.
	Digest string `json:"digest,omitempty"`
	// Repository, if set, is the only repository the package may come
	// from (a name from leafd's configuration).
	Repository string `json:"repository,omitempty"`
	// Program names the package's program; optional when it has one.
	Program string `json:"program,omitempty"`
	Hook    Hook   `json:"hook"`
	// Priority orders programs sharing an XDP or TC hook: lower runs
	// first, equal priorities run in name order. 0..1000; default the
	// package's, else 50.
	Priority *int `json:"priority,omitempty"`
	// ProceedOn lists the verdicts on which the next program in a chain
	// runs (names such as XDP_PASS or TC_ACT_OK, or numbers). Default: the
	// package's, else XDP_PASS for XDP and TC_ACT_OK, TC_ACT_UNSPEC for TC.
	ProceedOn []string       `json:"proceedOn,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
	// Companion runs the package's companion program beside the
	// attachment; without it the companion does not run.
	Companion *Companion `json:"companion,omitempty"`
}

// Companion is how an attachment runs its package's companion.
type Companion struct {
	// Args are its command-line arguments.
	Args []string `json:"args,omitempty"`
}

// Limits on companion arguments.
const (
	maxCompanionArgs   = 64
	maxCompanionArgLen = 4096
)

// Hook says where a program runs. Which fields apply depends on Type.
type Hook struct {
	Type string `json:"type"`
	// xdp, tc: the interface, in Netns (a name under /var/run/netns or an
	// absolute path; empty means leafd's own network namespace).
	Interface string `json:"interface,omitempty"`
	Netns     string `json:"netns,omitempty"`
	// xdp: native (default) or generic.
	Mode string `json:"mode,omitempty"`
	// tc, cgroup_skb: ingress or egress.
	Direction string `json:"direction,omitempty"`
	// tracepoint: "group/name", for example "sched/sched_process_exec".
	Tracepoint string `json:"tracepoint,omitempty"`
	// kprobe: kernel function; uprobe: symbol in Binary.
	Function string `json:"function,omitempty"`
	// uprobe: path of the executable or library.
	Binary string `json:"binary,omitempty"`
	// uprobe: only this process (0: all).
	PID int `json:"pid,omitempty"`
	// cgroup_skb: path of the cgroup (v2).
	Cgroup string `json:"cgroup,omitempty"`
	// xdp: replace a program leaf does not manage that holds the hook.
	// Without it leaf refuses to take the hook.
	ReplaceForeign bool `json:"replaceForeign,omitempty"`
	// xdp, tc: secure mode. Programs leaf does not manage that appear on
	// the hook are removed (and reported), except those AllowForeign
	// lists. Without it they are only reported.
	Secure bool `json:"secure,omitempty"`
	// xdp, tc: foreign programs secure mode leaves on the hook.
	AllowForeign []ProgramMatch `json:"allowForeign,omitempty"`
	// xdp, tc: how the hook's chain is built: auto (the default: fused
	// when every member can be, else tail calls), fused or tailcall. The
	// attachments of one hook that set it must agree.
	ChainMode string `json:"chainMode,omitempty"`
}

// Chain modes (Hook.ChainMode).
const (
	ChainModeAuto     = "auto"
	ChainModeFused    = "fused"
	ChainModeTailCall = "tailcall"
)

// HookChainModes returns, per chained hook key, the chain mode its
// attachments set (absent: auto).
func (s *State) HookChainModes() map[string]string {
	out := map[string]string{}
	for _, a := range s.Spec.Attachments {
		if a.Hook.Chained() && a.Hook.ChainMode != "" && a.Hook.ChainMode != ChainModeAuto {
			out[a.Hook.Key()] = a.Hook.ChainMode
		}
	}
	return out
}

// ProgramMatch names a program by exactly one of its name (as the kernel
// reports it, at most 15 characters), tag (16 hex digits) or ID.
type ProgramMatch struct {
	Name string `json:"name,omitempty"`
	Tag  string `json:"tag,omitempty"`
	ID   uint32 `json:"id,omitempty"`
}

// Matches reports whether a program with this name, tag and ID matches.
func (m ProgramMatch) Matches(name, tag string, id uint32) bool {
	switch {
	case m.Name != "":
		return m.Name == name
	case m.Tag != "":
		return strings.EqualFold(m.Tag, tag)
	default:
		return m.ID != 0 && m.ID == id
	}
}

var tagRE = regexp.MustCompile(`^[0-9a-fA-F]{16}$`)

// Validate returns what is wrong with the match, or "".
func (m ProgramMatch) Validate() string {
	n := 0
	for _, set := range []bool{m.Name != "", m.Tag != "", m.ID != 0} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return "set exactly one of name, tag and id"
	case m.Name != "" && len(m.Name) > 15:
		return fmt.Sprintf("name %q is longer than the 15 characters the kernel keeps of a program name", m.Name)
	case m.Tag != "" && !tagRE.MatchString(m.Tag):
		return fmt.Sprintf("tag %q must be 16 hex digits (as bpftool prog shows it)", m.Tag)
	}
	return ""
}

// DefaultPriority is the priority of an attachment that sets none.
const DefaultPriority = 50

// Error is one problem with the document, naming the attachment and field.
type Error struct {
	Attachment string `json:"attachment,omitempty"`
	Field      string `json:"field,omitempty"`
	Message    string `json:"message"`
	// Kind says what sort of problem it is, for the API's status code:
	// "" is a problem with the document; see the Kind constants.
	Kind string `json:"-"`
	// Err is the cause, kept for errors.Is and errors.As.
	Err error `json:"-"`
	// VerifierLog is the end of the verifier's log (kind KindVerifier).
	VerifierLog []string `json:"-"`
}

func (e Error) Error() string {
	var b strings.Builder
	if e.Attachment != "" {
		fmt.Fprintf(&b, "attachment %q: ", e.Attachment)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	if len(e.VerifierLog) > 0 {
		b.WriteString("\nverifier log:\n" + strings.Join(e.VerifierLog, "\n"))
	}
	return b.String()
}

// Unwrap returns the cause.
func (e Error) Unwrap() error { return e.Err }

// Errors collects every problem found in a document.
type Errors []Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns every problem, so that errors.Is and errors.As reach
// their causes.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Err returns es as an error, or nil when empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Parse decodes a YAML or JSON document and validates it.
func Parse(data []byte) (*State, error) {
	var s State
	if err := yamljson.Decode(data, &s); err != nil {
		return nil, Errors{{Message: err.Error()}}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Empty is the state with no attachments.
func Empty() *State {
	return &State{APIVersion: APIVersion, Kind: Kind}
}

// Limits bound a document. They are checked first, so an oversized
// document is refused before any of it is examined.
type Limits struct {
	// MaxAttachments per document.
	MaxAttachments int
	// MaxChainLength is the most programs on one XDP or TC hook (at most
	// MaxChainLength, the kernel's tail-call limit).
	MaxChainLength int
}

// DefaultLimits are leafd's limits unless configured otherwise.
var DefaultLimits = Limits{MaxAttachments: 1000, MaxChainLength: MaxChainLength}

// Kinds of Error besides a problem with the document (""). They keep
// their meaning from where the error happens to the API handler, which
// alone turns them into status codes (docs/api.md has the table).
const (
	// KindInvalid names "" (a problem with the document) in answers and
	// events.
	KindInvalid = "invalid"
	// KindNotFound: the package, version or repository named does not
	// exist.
	KindNotFound = "not-found"
	// KindTrust: the package fails its repository's trust policy
	// (signatures) or does not match the digest the document pins.
	KindTrust = "trust"
	// KindVerifier: the kernel's verifier refused the program.
	KindVerifier = "verifier"
	// KindFeatureMissing: this kernel lacks what the hook or program
	// needs (kprobes compiled out, a program or link type).
	KindFeatureMissing = "feature-missing"
	// KindUnavailable: a repository could not be reached or timed out.
	KindUnavailable = "unavailable"
	// KindLimit: a configured or kernel resource limit.
	KindLimit = "limit"
	// KindConflict: the hook is held by a program leaf does not manage.
	KindConflict = "conflict"
	// KindInternal: leafd itself failed (bpffs, store); not the client's
	// doing.
	KindInternal = "internal"
)

// kindRank orders kinds by which decides the status of several
// problems: leafd's own failure first, then what the client cannot fix
// by editing the document.
var kindRank = map[string]int{"": 0, KindNotFound: 1, KindTrust: 2, KindVerifier: 3, KindFeatureMissing: 4,
	KindLimit: 5, KindUnavailable: 6, KindConflict: 7, KindInternal: 8}

// Worst returns the kind that decides the status of errs: internal
// over conflict over unavailable over limit over the kinds of a document
// the kernel or a repository refuses, over a plain document problem.
func (es Errors) Worst() string {
	worst := ""
	for _, e := range es {
		if kindRank[e.Kind] > kindRank[worst] {
			worst = e.Kind
		}
	}
	return worst
}

// KindOf names the kind of an apply's failure: that of its worst
// problem (KindInvalid for a plain document problem), or KindInternal
// for an error that is no problem with the document.
func KindOf(err error) string {
	var es Errors
	if !errors.As(err, &es) {
		return KindInternal
	}
	if k := es.Worst(); k != "" {
		return k
	}
	return KindInvalid
}

// Validate checks the document against DefaultLimits without touching
// the kernel.
func (s *State) Validate() error { return s.ValidateWith(DefaultLimits) }

// ValidateWith checks the document against l without touching the
// kernel.
func (s *State) ValidateWith(l Limits) error {
	if l.MaxChainLength <= 0 || l.MaxChainLength > MaxChainLength {
		l.MaxChainLength = MaxChainLength
	}
	if l.MaxAttachments > 0 && len(s.Spec.Attachments) > l.MaxAttachments {
		return Errors{{Field: "spec.attachments", Kind: KindLimit, Message: fmt.Sprintf("%d attachments; this leafd accepts at most %d per document (maxAttachments)", len(s.Spec.Attachments), l.MaxAttachments)}}
	}
	var errs Errors
	if s.APIVersion != APIVersion {
		errs = append(errs, Error{Field: "apiVersion", Message: fmt.Sprintf("must be %q, got %q", APIVersion, s.APIVersion)})
	}
	if s.Kind != Kind {
		errs = append(errs, Error{Field: "kind", Message: fmt.Sprintf("must be %q, got %q", Kind, s.Kind)})
	}
	names := map[string]bool{}
	members := map[string]int{}
	modes := map[string]string{}
	chainModes := map[string]string{}
	for i := range s.Spec.Attachments {
		a := &s.Spec.Attachments[i]
		label := a.Name
		if label == "" {
			label = fmt.Sprintf("spec.attachments[%d]", i)
		}
		for _, e := range a.validate() {
			e.Attachment = label
			errs = append(errs, e)
		}
		if names[a.Name] {
			errs = append(errs, Error{Attachment: label, Field: "name", Message: "duplicate attachment name"})
		}
		names[a.Name] = true
		if a.Hook.Chained() {
			key := a.Hook.Key()
			members[key]++
			if m, ok := modes[key]; ok && m != a.Hook.XDPMode()+fmt.Sprint(a.Hook.ReplaceForeign) {
				errs = append(errs, Error{Attachment: label, Field: "hook", Message: fmt.Sprintf("programs on hook %s disagree on mode or replaceForeign; they share one attachment", a.Hook)})
			}
			modes[key] = a.Hook.XDPMode() + fmt.Sprint(a.Hook.ReplaceForeign)
			if cm := a.Hook.ChainMode; cm != "" {
				if other, ok := chainModes[key]; ok && other != cm {
					errs = append(errs, Error{Attachment: label, Field: "hook.chainMode", Message: fmt.Sprintf("%s, but another program on hook %s says %s; they share one chain", cm, a.Hook, other)})
				}
				chainModes[key] = cm
			}
			if members[key] == l.MaxChainLength+1 {
				errs = append(errs, Error{Attachment: label, Field: "hook", Kind: KindLimit, Message: fmt.Sprintf("more than %d programs on hook %s (maxChainLength; the kernel allows %d tail calls)", l.MaxChainLength, a.Hook, MaxChainLength)})
			}
		}
	}
	return errs.Err()
}

func (a *Attachment) validate() Errors {
	var errs Errors
	add := func(field, format string, args ...any) {
		errs = append(errs, Error{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !nameRE.MatchString(a.Name) {
		add("name", "%q is not a valid name (lower-case letters, digits and '-', at most 63)", a.Name)
	}
	if ref, err := ParsePackageRef(a.Package); err != nil {
		add("package", "%v", err)
	} else if a.Digest != "" && ref.Digest != "" && a.Digest != ref.Digest {
		add("digest", "%s differs from the digest in package (%s)", a.Digest, ref.Digest)
	}
	if a.Digest != "" && !digestRE.MatchString(a.Digest) {
		add("digest", "%q is not sha256:<64 hex digits>", a.Digest)
	}
	if a.Repository != "" && !repoNameRE.MatchString(a.Repository) {
		add("repository", "%q is not a repository name (letters, digits, '.', '_', '-', at most 63)", a.Repository)
	}
	if a.Priority != nil && (*a.Priority < 0 || *a.Priority > 1000) {
		add("priority", "must be between 0 and 1000, got %d", *a.Priority)
	}
	if len(a.ProceedOn) > 0 && !a.Hook.Chained() {
		add("proceedOn", "only applies to xdp and tc hooks")
	}
	if a.Priority != nil && !a.Hook.Chained() {
		add("priority", "only applies to xdp and tc hooks")
	}
	for i, v := range a.ProceedOn {
		if _, err := ParseVerdict(a.Hook.Type, v); err != nil {
			add(fmt.Sprintf("proceedOn[%d]", i), "%v", err)
		}
	}
	if c := a.Companion; c != nil {
		if len(c.Args) > maxCompanionArgs {
			add("companion.args", "at most %d arguments, got %d", maxCompanionArgs, len(c.Args))
		}
		for i, arg := range c.Args {
			if len(arg) > maxCompanionArgLen || strings.ContainsRune(arg, 0) {
				add(fmt.Sprintf("companion.args[%d]", i), "must be at most %d bytes without NUL", maxCompanionArgLen)
			}
		}
	}
	errs = append(errs, a.Hook.validate()...)
	return errs
}

// ParseRef splits "name@version" (a pinned digest is ignored).
func ParseRef(ref string) (name, version string, err error) {
	r, err := ParsePackageRef(ref)
	return r.Name, r.Version, err
}

// PackageRef is a parsed package reference.
type PackageRef struct {
	Name, Version string
	// Digest is "sha256:<hex>" when pinned, else empty.
	Digest string
}

var (
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	repoNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// ParsePackageRef parses "name@version" or "name@version@sha256:<hex>".
func ParsePackageRef(ref string) (PackageRef, error) {
	parts := strings.Split(ref, "@")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return PackageRef{}, fmt.Errorf("%q must be name@version or name@version@sha256:<hex>", ref)
	}
	r := PackageRef{Name: parts[0], Version: parts[1]}
	if len(parts) == 3 {
		if !digestRE.MatchString(parts[2]) {
			return PackageRef{}, fmt.Errorf("%q: the pinned digest must be sha256:<64 hex digits>", ref)
		}
		r.Digest = parts[2]
	}
	return r, nil
}

// PinnedDigest returns the digest the attachment pins, if any.
func (a *Attachment) PinnedDigest() string {
	if a.Digest != "" {
		return a.Digest
	}
	r, _ := ParsePackageRef(a.Package)
	return r.Digest
}

// PriorityOrDefault returns the attachment's priority.
func (a *Attachment) PriorityOrDefault() int {
	if a.Priority == nil {
		return DefaultPriority
	}
	return *a.Priority
}

// Attachment returns the named attachment, or nil.
func (s *State) Attachment(name string) *Attachment {
	for i := range s.Spec.Attachments {
		if s.Spec.Attachments[i].Name == name {
			return &s.Spec.Attachments[i]
		}
	}
	return nil
}

// Names returns the attachment names, sorted.
func (s *State) Names() []string {
	var names []string
	for _, a := range s.Spec.Attachments {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	return names
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	data, err := json.Marshal(s)
	if err != nil {
		panic(err) // a State always marshals
	}
	var out State
	if err := yamljson.Decode(data, &out); err != nil {
		panic(err)
	}
	return &out
}

// Namespaces returns the network namespace paths ("" for leafd's own) of
// the document's XDP and TC hooks, sorted and without repeats.
func (s *State) Namespaces() []string {
	set := map[string]bool{}
	for _, a := range s.Spec.Attachments {
		if a.Hook.Chained() {
			set[a.Hook.NetnsPath()] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

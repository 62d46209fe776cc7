// Package v1 holds the types of leafd's HTTP/JSON API, version 1. The
// daemon serves them and the typed client (package client) speaks them.
package v1

import "time"

// Paths of the API.
const (
	PathState       = "/v1/state"        // GET: desired state; PUT: apply a document
	PathStatus      = "/v1/status"       // GET: attachments as the kernel holds them
	PathAttachments = "/v1/attachments"  // DELETE /v1/attachments/{name}
	PathPackages    = "/v1/packages"     // GET: packages in the repositories
	PathStats       = "/v1/stats"        // GET, PUT: kernel BPF statistics on or off
	PathTokens      = "/v1/tokens"       // GET: list; POST: issue; DELETE /v1/tokens/{id}: revoke
	PathConsole     = "/console/"        // GET: the web console (files; the page uses the endpoints above)
	PathWhoami      = "/v1/whoami"       // GET: the caller's identity and role
	PathDebug       = "/debug/pprof/"    // Go runtime profiles (admin only)
	PathEvents      = "/v1/events"       // GET: the event log; ?follow=true streams it
	PathHealth      = "/healthz"         // GET: leafd answers
	PathReady       = "/readyz"          // GET: 200 once the first reconciliation finished
	PathHistory     = "/v1/history"      // GET: recent samples of declared metrics and program runs
	PathCerts       = "/v1/certificates" // GET: the TLS listener's certificates and their expiry
)

// ApplyResult says what an apply (or a delete) did, or would do with
// dryRun.
type ApplyResult struct {
	DryRun  bool     `json:"dryRun,omitempty"`
	Changed bool     `json:"changed"`
	Actions []Action `json:"actions"`
}

// Action is what happened to one attachment.
type Action struct {
	Attachment string `json:"attachment"`
	// Kind is keep, update-params, replace, reattach, create or delete.
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// Status is the state of every attachment.
type Status struct {
	BPFStats    bool               `json:"bpfStats"`
	Attachments []AttachmentStatus `json:"attachments"`
	// Foreign are programs leaf does not own on the hooks it manages, as
	// the last drift check found them.
	Foreign []ForeignProgram `json:"foreign,omitempty"`
}

// ForeignProgram is a program someone else attached to a hook leaf
// manages.
type ForeignProgram struct {
	// Hook is written like AttachmentStatus.Hook, so the two join.
	Hook      string `json:"hook"`
	HookType  string `json:"hookType"`
	ProgramID uint32 `json:"programID"`
	// LinkID is 0 for a program attached without a bpf_link.
	LinkID uint32 `json:"linkID,omitempty"`
	Name   string `json:"name,omitempty"`
	Tag    string `json:"tag,omitempty"`
	// Secure: secure mode is on for the hook; Allowed: an allowlist keeps
	// the program anyway.
	Secure  bool `json:"secure,omitempty"`
	Allowed bool `json:"allowed,omitempty"`
	// RunsBefore: the kernel runs it before leaf's chain (TCX order).
	RunsBefore bool `json:"runsBefore,omitempty"`
}

// AttachmentStatus is one attachment as desired and as observed.
type AttachmentStatus struct {
	Name       string `json:"name"`
	Package    string `json:"package"`
	Digest     string `json:"digest,omitempty"`
	Repository string `json:"repository,omitempty"`
	// Trust is what leafd verified before loading the package: signed,
	// unsigned-allowed (the repository's policy allows unsigned packages)
	// or builtin; Signers are the signatures that verified.
	Trust    string   `json:"trust,omitempty"`
	Signers  []Signer `json:"signers,omitempty"`
	Program  string   `json:"program"`
	HookType string   `json:"hookType"`
	Hook     string   `json:"hook"`
	Priority int      `json:"priority"`
	// State is attached, detached or missing.
	State     string            `json:"state"`
	Problem   string            `json:"problem,omitempty"`
	ProgramID uint32            `json:"programID,omitempty"`
	LinkID    uint32            `json:"linkID,omitempty"`
	Maps      map[string]uint32 `json:"maps,omitempty"`
	Params    map[string]any    `json:"params,omitempty"`
	// Companion is set when the attachment runs its package's companion.
	Companion *CompanionStatus `json:"companion,omitempty"`
	// Chain is set for programs on XDP and TC hooks.
	Chain *ChainStatus `json:"chain,omitempty"`
	// RunCount and RunTimeNs come from the kernel's BPF statistics.
	RunCount  *uint64   `json:"runCount,omitempty"`
	RunTimeNs *uint64   `json:"runTimeNs,omitempty"`
	LoadedAt  time.Time `json:"loadedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// CompanionStatus is the state of an attachment's user-space companion.
type CompanionStatus struct {
	// State is starting, running or restarting (waiting out its backoff
	// after an exit).
	State string `json:"state"`
	PID   int    `json:"pid,omitempty"`
	// Restarts counts exits since the attachment asked for it.
	Restarts int `json:"restarts"`
	// LastExit says why it last ended.
	LastExit string    `json:"lastExit,omitempty"`
	Since    time.Time `json:"since,omitzero"`
}

// Companion states.
const (
	CompanionStarting   = "starting"
	CompanionRunning    = "running"
	CompanionRestarting = "restarting"
)

// ChainStatus is a program's place in its hook's chain, as the kernel
// runs it.
type ChainStatus struct {
	// Position counts from 1; Length is the number of programs the kernel
	// runs on the hook.
	Position  int      `json:"position"`
	Length    int      `json:"length"`
	Priority  int      `json:"priority"`
	ProceedOn []string `json:"proceedOn"`
	// Mode is fused (one program built from every member's code), or
	// rewrite or cooperative (members linked by tail calls).
	Mode string `json:"mode"`
	// ModeReason says why the chain is not fused, when it is not.
	ModeReason string `json:"modeReason,omitempty"`
	// NextProgramID is the next member's program (0 for the last).
	NextProgramID uint32 `json:"nextProgramID,omitempty"`
	// HookRunCount and HookRunTimeNs are the kernel's BPF statistics of
	// the program the hook runs: the whole chain, every member together
	// (the kernel cannot time one member of a chain; its runs are
	// RunCount). Set while statistics are on.
	HookRunCount  *uint64 `json:"hookRunCount,omitempty"`
	HookRunTimeNs *uint64 `json:"hookRunTimeNs,omitempty"`
}

// States of an attachment.
const (
	StateAttached = "attached"
	StateDetached = "detached"
	StateMissing  = "missing"
	// StateInterfaceMissing: the hook's interface or network namespace
	// does not exist (yet or any more); leafd attaches when it appears.
	StateInterfaceMissing = "interface-missing"
)

// Package is a package version a repository offers.
type Package struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Description string    `json:"description"`
	License     string    `json:"license"`
	Digest      string    `json:"digest"`
	Repository  string    `json:"repository"`
	Programs    []Program `json:"programs"`
}

// Program of a package.
type Program struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Hooks []string `json:"hooks"`
}

// MapList lists an attachment's maps.
type MapList struct {
	Attachment string    `json:"attachment"`
	Maps       []MapInfo `json:"maps"`
}

// MapInfo describes a map.
type MapInfo struct {
	Name       string `json:"name"`
	ID         uint32 `json:"id"`
	Type       string `json:"type"`
	KeySize    uint32 `json:"keySize"`
	ValueSize  uint32 `json:"valueSize"`
	MaxEntries uint32 `json:"maxEntries"`
}

// MapDump is the content of one map.
type MapDump struct {
	Attachment string     `json:"attachment"`
	Map        MapInfo    `json:"map"`
	Entries    []MapEntry `json:"entries"`
	// Truncated is set when the map held more entries than returned.
	Truncated bool `json:"truncated,omitempty"`
	// Next, when set, is the last key returned (hex): pass it as
	// MapQuery.After for the next page.
	Next string `json:"next,omitempty"`
}

// TailEvent is one line of a tail stream (newline-delimited JSON): a
// record, or, last, End.
type TailEvent struct {
	Time time.Time `json:"time"`
	// Record is the record decoded from the package's declared BTF type.
	Record map[string]any `json:"record,omitempty"`
	// Raw is the record in hex when no type is declared or it does not
	// decode (Error says why).
	Raw   string `json:"raw,omitempty"`
	Error string `json:"error,omitempty"`
	// Lost counts records the kernel dropped before this one.
	Lost uint64 `json:"lost,omitempty"`
	// End closes the stream with the totals.
	End *TailEnd `json:"end,omitempty"`
}

// TailEnd is the last event of a tail.
type TailEnd struct {
	Records uint64 `json:"records"`
	// Lost counts records dropped by the kernel or, when the client read
	// too slowly, by leafd.
	Lost uint64 `json:"lost"`
}

// MapQuery selects the entries of a map dump (query parameters key,
// after, limit and nonzero).
type MapQuery struct {
	// Key (hex) asks for this key only.
	Key string
	// After (hex) asks for the keys after this one, in key order.
	After string
	// Limit is the most entries returned (default and cap 10000).
	Limit int
	// NonZero leaves out entries whose value is all zero bytes.
	NonZero bool
}

// MapEntry is one key and value. Keys and values are hex bytes; when they
// are 1, 2, 4 or 8 bytes they are also given as unsigned integers in host
// byte order. Per-CPU values are listed per CPU, and Value holds their sum
// when they are integers.
type MapEntry struct {
	Key       string   `json:"key"`
	KeyUint   *uint64  `json:"keyUint,omitempty"`
	Value     string   `json:"value,omitempty"`
	ValueUint *uint64  `json:"valueUint,omitempty"`
	PerCPU    []string `json:"perCPU,omitempty"`
}

// Stats is whether the kernel collects run count and run time per program.
type Stats struct {
	Enabled bool `json:"enabled"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error string `json:"error"`
	// Kind says what sort of failure it is, for programs to act on (the
	// table is in docs/api.md): invalid, not-found, trust, verifier,
	// feature-missing, limit, unavailable, conflict, internal, and for
	// requests that never reach a document bad-request,
	// unauthenticated, forbidden, rate-limited.
	Kind    string        `json:"kind"`
	Details []ErrorDetail `json:"details,omitempty"`
}

// Error kinds (Error.Kind, ErrorDetail.Kind); docs/api.md has the status
// code of each.
const (
	ErrorKindBadRequest      = "bad-request"
	ErrorKindUnauthenticated = "unauthenticated"
	ErrorKindForbidden       = "forbidden"
	ErrorKindRateLimited     = "rate-limited"
	ErrorKindInvalid         = "invalid"
	ErrorKindNotFound        = "not-found"
	ErrorKindTrust           = "trust"
	ErrorKindVerifier        = "verifier"
	ErrorKindFeatureMissing  = "feature-missing"
	ErrorKindLimit           = "limit"
	ErrorKindUnavailable     = "unavailable"
	ErrorKindConflict        = "conflict"
	ErrorKindInternal        = "internal"
)

// ErrorDetail names the attachment and field a problem is about.
type ErrorDetail struct {
	Attachment string `json:"attachment,omitempty"`
	Field      string `json:"field,omitempty"`
	Message    string `json:"message"`
	// Kind is this problem's kind (Error.Kind is the one that decided
	// the status code).
	Kind string `json:"kind,omitempty"`
	// VerifierLog is the end of the verifier's log when it refused the
	// program (kind verifier).
	VerifierLog []string `json:"verifierLog,omitempty"`
}

// Signer is a verified signature: its role (author or repository), the
// key's name in the trust policy and its fingerprint (sha256 of the DER
// public key).
type Signer struct {
	Role  string `json:"role"`
	Key   string `json:"key"`
	KeyID string `json:"keyID"`
}

// TokenRequest asks leafd to issue a bearer token.
type TokenRequest struct {
	// Subject names the holder in audit lines.
	Subject string `json:"subject"`
	// Role is reader, operator or admin.
	Role string `json:"role"`
	// TTL is how long the token is valid, as a Go duration ("24h");
	// empty means leafd's default.
	TTL string `json:"ttl,omitempty"`
}

// IssuedToken is a new token. Token is shown once: leafd keeps only its
// metadata.
type IssuedToken struct {
	Token string    `json:"token"`
	Info  TokenInfo `json:"info"`
}

// TokenInfo is what leafd records of a token it issued.
type TokenInfo struct {
	ID        string     `json:"id"`
	Subject   string     `json:"subject"`
	Role      string     `json:"role"`
	KeyID     string     `json:"keyID"`
	IssuedAt  time.Time  `json:"issuedAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	// State is valid, expired, revoked, or stale-key (signed by a key
	// that is no longer the signing key).
	State string `json:"state"`
}

// Token states.
const (
	TokenValid    = "valid"
	TokenExpired  = "expired"
	TokenRevoked  = "revoked"
	TokenStaleKey = "stale-key"
)

// Whoami is the caller as leafd sees it.
type Whoami struct {
	// Via is unix, cert or token.
	Via     string `json:"via"`
	Subject string `json:"subject"`
	Role    string `json:"role"`
}

// Event is one entry of leafd's event log: an apply, a drift noticed, a
// restore, a foreign program, a companion's life. Seq grows by one per
// event for the daemon's lifetime, so a gap tells a reader that the
// bounded log dropped events it had not read yet.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Type is one of EventTypes.
	Type       string `json:"type"`
	Attachment string `json:"attachment,omitempty"`
	Hook       string `json:"hook,omitempty"`
	// Kind refines the type: the drift's kind (link-detached,
	// map-pin-missing, …) or the apply action (create, replace, …).
	Kind      string `json:"kind,omitempty"`
	ProgramID uint32 `json:"programID,omitempty"`
	// PID is a companion's process.
	PID     int    `json:"pid,omitempty"`
	Message string `json:"message"`
	// LatencyMs, on restored events: from noticing the drift to the
	// kernel holding the desired state again.
	LatencyMs *float64 `json:"latencyMs,omitempty"`
}

// Event types. The set is fixed: it is a metric label.
const (
	EventApply          = "apply"           // an attachment changed by an apply or delete
	EventApplyFailed    = "apply-failed"    // an apply or delete failed; nothing changed
	EventDrift          = "drift"           // the kernel no longer holds what leaf applied
	EventRestored       = "restored"        // a drift was repaired
	EventRestoreFailed  = "restore-failed"  // repairing a drift failed
	EventForeign        = "foreign-program" // a program leaf does not own runs on a hook leaf manages
	EventForeignRemoved = "foreign-removed" // secure mode removed a foreign program
	EventCompanion      = "companion"       // a companion started, exited, was restarted or stopped
)

// EventTypes lists every event type.
var EventTypes = []string{EventApply, EventApplyFailed, EventDrift, EventRestored, EventRestoreFailed, EventForeign, EventForeignRemoved, EventCompanion}

// History is what leafd sampled over the last minutes: every series'
// values line up with Times (null where the series had no value).
type History struct {
	// Interval is the time between samples, in seconds; Capacity is the
	// most samples leafd keeps (?samples=N asks for the last N only).
	Interval float64     `json:"interval"`
	Capacity int         `json:"capacity"`
	Times    []time.Time `json:"times"`
	Series   []Series    `json:"series"`
}

// Series is one attachment's metric over time.
type Series struct {
	Attachment string `json:"attachment"`
	// Metric is the exported name (leaf_pkg_<package>_<name>, or
	// leaf_program_runs_total and leaf_program_run_time_seconds_total
	// while BPF statistics are on).
	Metric string `json:"metric"`
	Help   string `json:"help,omitempty"`
	// Type is counter (the console draws its rate) or gauge.
	Type string `json:"type"`
	// Verdict is the program verdict the counter counts, when the package
	// declares one (XDP_DROP, TC_ACT_SHOT, …).
	Verdict string     `json:"verdict,omitempty"`
	Values  []*float64 `json:"values"`
}

// Certificates are the TLS listener's certificates as leafd watches them.
type Certificates struct {
	// TLS is false when leafd has no TLS listener (the rest is empty).
	TLS bool `json:"tls"`
	// WarningWindow is how long before expiry leafd warns, in seconds.
	WarningWindow float64       `json:"warningWindow"`
	Certificates  []Certificate `json:"certificates"`
	// Clients sums up the client certificates seen recently, without
	// naming them.
	Clients *ClientCertificates `json:"clients,omitempty"`
}

// Certificate is one certificate and the time it has left.
type Certificate struct {
	// Kind is server or ca.
	Kind     string    `json:"kind"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
	// SecondsLeft is negative once expired; Warning is true inside the
	// warning window.
	SecondsLeft float64 `json:"secondsLeft"`
	Warning     bool    `json:"warning"`
}

// ClientCertificates sums up the recently seen client certificates.
type ClientCertificates struct {
	Seen          int       `json:"seen"`
	SoonestExpiry time.Time `json:"soonestExpiry"`
	Expiring      int       `json:"expiring"`
}

// Package server serves leafd's HTTP/JSON API (api/v1). Every answer is
// JSON; a problem with the request is a 4xx that says what is wrong, never
// a 500.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/auth/token"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/events"
	"github.com/leaf-ebpf/leaf/internal/l3af"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/tail"
	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// MaxBodySize caps request bodies.
const MaxBodySize = 4 << 20

// Server holds what the handlers need.
type Server struct {
	Reconciler *reconciler.Reconciler
	Stats      *reconciler.Stats
	Repos      repository.Set
	Logger     *slog.Logger
	// Auth identifies callers; nil means every caller is an
	// unauthenticated one (only public endpoints answer).
	Auth *auth.Authenticator
	// Tokens issues and revokes bearer tokens; nil when tokens are off.
	Tokens *token.Service
	// Limiter rate-limits mutating calls per caller; nil means no limit.
	Limiter *RateLimiter
	Events  *events.Log
	// Ready reports whether the first reconciliation finished.
	Ready func() bool
	// Done closes when leafd shuts down, ending event streams.
	Done <-chan struct{}
	// Tail streams ring and perf buffer records; nil turns it off.
	Tail *tail.Stats
	// Recheck is how often a running request re-checks its caller's
	// credentials (DefaultRecheck when zero).
	Recheck time.Duration
	// L3AF serves l3afd's API; nil: those routes answer 404.
	L3AF *l3af.Service
	// ManagedBy, if set, says who owns the desired state (kubernetes):
	// local changes to it are refused with 409.
	ManagedBy string
	// History gives the recent samples the console charts; nil answers
	// an empty history.
	History interface{ Snapshot(samples int) *v1.History }
	// Certificates reports the TLS listener's certificates; nil when
	// leafd has no TLS listener.
	Certificates func() v1.Certificates
}

// refuseManaged answers 409 when the desired state is managed elsewhere.
func (s *Server) refuseManaged(w http.ResponseWriter) bool {
	if s.ManagedBy == "" {
		return false
	}
	writeError(w, http.StatusConflict, fmt.Errorf("the desired state is managed by %s: change it there (LeafPolicy objects), not on the host", s.ManagedBy))
	return true
}

// Handler returns the API: every route of the table in routes.go behind
// authentication, authorization, rate limiting and an audit line.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern(), s.guard(rt))
	}
	// audit is outermost so that the 500 recoverPanics writes is what
	// the audit line records.
	return s.audit(s.recoverPanics(mux))
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Errorf("no endpoint %s %s", r.Method, r.URL.Path))
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	id := auth.IdentityFrom(r.Context())
	writeJSON(w, http.StatusOK, v1.Whoami{Via: string(id.Via), Subject: id.Subject, Role: id.Role.String()})
}

func (s *Server) getState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Reconciler.Desired())
}

// changeRequest reads what every request that changes the desired state
// starts with: refused when a manager owns the state, the dryRun query, and
// the bounded body. On false the answer is written.
func (s *Server) changeRequest(w http.ResponseWriter, r *http.Request) (body []byte, dryRun, ok bool) {
	if s.refuseManaged(w) {
		return nil, false, false
	}
	dryRun, err := boolQuery(r, "dryRun")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return nil, false, false
	}
	body, err = readBody(w, r, MaxBodySize)
	if err != nil {
		writeError(w, bodyErrorCode(err), err)
		return nil, false, false
	}
	return body, dryRun, true
}

func (s *Server) putState(w http.ResponseWriter, r *http.Request) {
	body, dryRun, ok := s.changeRequest(w, r)
	if !ok {
		return
	}
	var st desired.State
	if err := yamljson.Decode(body, &st); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := checkProbeTargets(&st, auth.IdentityFrom(r.Context())); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	if s.L3AF != nil {
		// A document carrying an L3AF configuration names its packages
		// the way l3afd's payloads do.
		if err := s.L3AF.Learn(&st); err != nil {
			writeError(w, http.StatusUnprocessableEntity, err)
			return
		}
	}
	res, err := s.Reconciler.Apply(r.Context(), &st, dryRun)
	if err != nil {
		s.applyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) deleteAttachment(w http.ResponseWriter, r *http.Request) {
	if s.refuseManaged(w) {
		return
	}
	dryRun, err := boolQuery(r, "dryRun")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	res, err := s.Reconciler.Delete(r.Context(), []string{r.PathValue("name")}, dryRun)
	if err != nil {
		s.applyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// applyError maps an apply failure to a status by its kind (kindStatus);
// an unknown attachment is 404, an error of no kind leafd's own (500).
func (s *Server) applyError(w http.ResponseWriter, err error) {
	var de desired.Errors
	switch {
	case errors.Is(err, reconciler.ErrUnknownAttachment):
		writeError(w, http.StatusNotFound, err)
	case errors.As(err, &de):
		if de.Worst() == desired.KindInternal {
			s.Logger.Error("apply failed", "error", err)
		}
		writeError(w, kindStatus(de.Worst()), err)
	default:
		s.Logger.Error("apply failed", "error", err)
		writeError(w, http.StatusInternalServerError, err)
	}
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.Reconciler.Status()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) listMaps(w http.ResponseWriter, r *http.Request) {
	maps, err := s.Reconciler.Maps(r.PathValue("name"))
	if err != nil {
		writeLookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, maps)
}

func (s *Server) dumpMap(w http.ResponseWriter, r *http.Request) {
	q, err := mapQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	dump, err := s.Reconciler.DumpMap(r.PathValue("name"), r.PathValue("map"), q)
	if errors.Is(err, reconciler.ErrBadMapQuery) {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err != nil {
		writeLookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, dump)
}

// mapQuery reads a map dump's query parameters.
func mapQuery(v url.Values) (v1.MapQuery, error) {
	q := v1.MapQuery{Key: v.Get("key"), After: v.Get("after")}
	if len(q.Key) > 1024 || len(q.After) > 1024 {
		return q, errors.New("key and after are at most 512 bytes of hex")
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("limit %q is not a positive number", s)
		}
		q.Limit = n
	}
	switch s := v.Get("nonzero"); s {
	case "", "false", "0":
	case "true", "1":
		q.NonZero = true
	default:
		return q, fmt.Errorf("nonzero %q is not true or false", s)
	}
	return q, nil
}

func writeLookupError(w http.ResponseWriter, err error) {
	if errors.Is(err, reconciler.ErrUnknownAttachment) || errors.Is(err, reconciler.ErrUnknownMap) {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeError(w, http.StatusInternalServerError, err)
}

func (s *Server) listPackages(w http.ResponseWriter, r *http.Request) {
	out := []v1.Package{}
	for _, p := range s.Repos.List() {
		m := p.Manifest
		pkg := v1.Package{Name: m.Name, Version: m.Version, Description: m.Description, License: m.License, Digest: p.Digest, Repository: p.Repository}
		for _, prog := range m.Programs {
			pkg.Programs = append(pkg.Programs, v1.Program{Name: prog.Name, Type: prog.Type, Hooks: prog.Hooks})
		}
		out = append(out, pkg)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, v1.Stats{Enabled: s.Stats.Enabled()})
}

func (s *Server) putStats(w http.ResponseWriter, r *http.Request) {
	var req v1.Stats
	body, err := readBody(w, r, 4096)
	if err != nil {
		writeError(w, bodyErrorCode(err), err)
		return
	}
	if err := yamljson.Decode(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.Stats.Set(req.Enabled); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	// Chain members count their own runs only while statistics are on:
	// reconcile so that chains are rebuilt with or without the counters.
	if _, err := s.Reconciler.Reconcile(r.Context()); err != nil {
		s.Logger.Error("reconcile after changing BPF statistics", "error", err)
	}
	writeJSON(w, http.StatusOK, v1.Stats{Enabled: s.Stats.Enabled()})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("handler panic", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, fmt.Errorf("internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	return body, nil
}

// bodyErrorCode is 413 for a body over the limit and 400 for one that
// could not be read (bad chunked encoding, shorter than announced).
func bodyErrorCode(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query parameter %s: %q is not a boolean", name, v)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// maxErrorDetails caps the details in one error body.
const maxErrorDetails = 50

func writeError(w http.ResponseWriter, code int, err error) {
	body := v1.Error{Error: err.Error(), Kind: statusKind(code)}
	var de desired.Errors
	if errors.As(err, &de) {
		if k := de.Worst(); k != "" {
			body.Kind = k // else the status says it (a plain document problem is 422, invalid)
		}
		body.Error = fmt.Sprintf("%d problem(s) in the desired state", len(de))
		if len(de) == 1 {
			body.Error = de[0].Error()
		}
		// Bounded: a document with thousands of problems gets the first
		// maxErrorDetails and the count.
		for i, e := range de {
			if i == maxErrorDetails {
				body.Error += fmt.Sprintf(" (the first %d are listed)", maxErrorDetails)
				break
			}
			body.Details = append(body.Details, v1.ErrorDetail{Attachment: e.Attachment, Field: e.Field, Message: e.Message, Kind: apiKind(e.Kind), VerifierLog: e.VerifierLog})
		}
	}
	writeJSON(w, code, body)
}

package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
)

// TestApplyErrorKinds: the kind an error carries from where it happened
// decides the status code and reaches the body, per problem and for the
// whole answer, through the wrapping the reconciler adds.
func TestApplyErrorKinds(t *testing.T) {
	cause := errors.New("the cause")
	cases := []struct {
		name string
		errs desired.Errors
		code int
		kind string
	}{
		{"document", desired.Errors{{Attachment: "a", Field: "params.x", Message: "bad"}}, 422, "invalid"},
		{"not found", desired.Errors{{Attachment: "a", Field: "package", Message: "no such", Kind: desired.KindNotFound}}, 422, "not-found"},
		{"trust", desired.Errors{{Attachment: "a", Field: "package", Message: "unsigned", Kind: desired.KindTrust, Err: cause}}, 422, "trust"},
		{"verifier", desired.Errors{{Attachment: "a", Field: "package", Message: "refused", Kind: desired.KindVerifier, VerifierLog: []string{"0: R0=ctx", "invalid access to packet"}}}, 422, "verifier"},
		{"feature", desired.Errors{{Attachment: "a", Field: "hook.type", Message: "no kprobes", Kind: desired.KindFeatureMissing}}, 422, "feature-missing"},
		{"limit", desired.Errors{{Field: "spec.attachments", Message: "too many", Kind: desired.KindLimit}}, 413, "limit"},
		{"unavailable", desired.Errors{{Attachment: "a", Field: "package", Message: "timeout", Kind: desired.KindUnavailable}}, 503, "unavailable"},
		{"conflict wins over trust", desired.Errors{
			{Attachment: "a", Field: "package", Message: "unsigned", Kind: desired.KindTrust},
			{Attachment: "b", Field: "hook", Message: "foreign", Kind: desired.KindConflict}}, 409, "conflict"},
		{"internal wins", desired.Errors{
			{Attachment: "a", Message: "bpffs", Kind: desired.KindInternal},
			{Attachment: "b", Field: "hook", Message: "foreign", Kind: desired.KindConflict}}, 500, "internal"},
	}
	s := &Server{Logger: slog.New(slog.DiscardHandler)}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := &reconciler.StageError{Stage: reconciler.StageAttach, Err: fmt.Errorf("apply: %w", tc.errs)}
			rec := httptest.NewRecorder()
			s.applyError(rec, err)
			var body v1.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.code || body.Kind != tc.kind {
				t.Fatalf("status %d kind %q, want %d %q: %s", rec.Code, body.Kind, tc.code, tc.kind, rec.Body)
			}
			if len(body.Details) != len(tc.errs) {
				t.Fatalf("details %+v", body.Details)
			}
			for i, d := range body.Details {
				e := tc.errs[i]
				if d.Attachment != e.Attachment || d.Field != e.Field || d.Kind != apiKind(e.Kind) || len(d.VerifierLog) != len(e.VerifierLog) {
					t.Errorf("detail %d: %+v, from %+v", i, d, e)
				}
			}
		})
	}
	// The cause survives the wrapping for errors.Is.
	if err := fmt.Errorf("x: %w", cases[2].errs); !errors.Is(err, cause) {
		t.Error("errors.Is does not reach the cause of a desired.Error")
	}
}

// TestErrorKindsWithoutDocument: answers that never reached a document
// get the kind their status says.
func TestErrorKindsWithoutDocument(t *testing.T) {
	for code, kind := range map[int]string{400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found", 409: "conflict", 413: "limit", 429: "rate-limited", 500: "internal"} {
		rec := httptest.NewRecorder()
		writeError(rec, code, errors.New("x"))
		var body v1.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Kind != kind {
			t.Errorf("%d: kind %q, want %q (%v)", code, body.Kind, kind, err)
		}
	}
	h := (&Server{Logger: slog.New(slog.DiscardHandler)}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nosuch", nil))
	if rec.Code != 404 || !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("unknown endpoint: %d %s", rec.Code, rec.Body)
	}
}

// TestKindsAreTheAPIs: the kinds errors carry inside leafd are the ones
// api/v1 names for clients.
func TestKindsAreTheAPIs(t *testing.T) {
	for inside, api := range map[string]string{
		desired.KindInvalid: v1.ErrorKindInvalid, desired.KindNotFound: v1.ErrorKindNotFound, desired.KindTrust: v1.ErrorKindTrust,
		desired.KindVerifier: v1.ErrorKindVerifier, desired.KindFeatureMissing: v1.ErrorKindFeatureMissing, desired.KindLimit: v1.ErrorKindLimit,
		desired.KindUnavailable: v1.ErrorKindUnavailable, desired.KindConflict: v1.ErrorKindConflict, desired.KindInternal: v1.ErrorKindInternal,
	} {
		if inside != api {
			t.Errorf("leafd says %q where api/v1 says %q", inside, api)
		}
	}
}

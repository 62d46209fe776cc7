package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/auth"
)

// TestRouteTable checks the table itself: every route states a role,
// patterns are unique, and only reads are open to readers.
func TestRouteTable(t *testing.T) {
	s := &Server{}
	seen := map[string]bool{}
	for _, rt := range s.routes() {
		p := rt.pattern()
		if seen[p] {
			t.Errorf("%s listed twice", p)
		}
		seen[p] = true
		if rt.handler == nil {
			t.Errorf("%s has no handler", p)
		}
		// whoami tells a caller with no role that it has none.
		if rt.role == auth.None && p != "GET /healthz" && p != "GET /readyz" && p != "GET /v1/whoami" && p != "/" {
			t.Errorf("%s is open to anyone; only /healthz, /readyz, /v1/whoami and the 404 fallback may be", p)
		}
		if rt.method != "" && mutating(rt.method) && rt.role < auth.Operator {
			t.Errorf("%s changes state but needs only %s", p, rt.role)
		}
		if strings.HasPrefix(rt.path, "/debug/") && rt.role != auth.Admin {
			t.Errorf("%s is a debug endpoint but needs only %s", p, rt.role)
		}
		if rt.dryRunRole != auth.None && rt.dryRunRole >= rt.role {
			t.Errorf("%s: the dry-run role %s is not below the role %s", p, rt.dryRunRole, rt.role)
		}
	}
	if got := len(Endpoints()); got != len(s.routes()) {
		t.Errorf("Endpoints() lists %d routes, the table %d", got, len(s.routes()))
	}
}

func TestRateLimiter(t *testing.T) {
	l := NewRateLimiter(1, 3)
	for i := range 3 {
		if w := l.Wait("a"); w != 0 {
			t.Fatalf("call %d within the burst waits %s", i, w)
		}
	}
	w := l.Wait("a")
	if w <= 0 || w > time.Second {
		t.Errorf("call over the burst: wait %s, want (0, 1s]", w)
	}
	if w := l.Wait("b"); w != 0 {
		t.Errorf("another caller is limited too: wait %s", w)
	}
}

// TestUnauthenticatedHandler: a Server without an authenticator treats
// every caller as anonymous: only the public endpoints answer.
func TestUnauthenticatedHandler(t *testing.T) {
	h := (&Server{Logger: discard()}).Handler()
	for path, want := range map[string]int{"/healthz": 200, "/v1/status": 401, "/v1/tokens": 401, "/debug/pprof/": 401, "/nope": 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d: %s", path, rec.Code, want, rec.Body)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

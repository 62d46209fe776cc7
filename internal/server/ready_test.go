package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// TestReadyFollowsFirstReconcile: /readyz is 503 until leafd says the
// first reconciliation finished, /healthz is 200 all along.
func TestReadyFollowsFirstReconcile(t *testing.T) {
	var ready atomic.Bool
	h := (&Server{Logger: slog.New(slog.DiscardHandler), Ready: ready.Load}).Handler()
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if c := get(v1.PathReady); c != http.StatusServiceUnavailable {
		t.Fatalf("readyz before the first reconcile: %d", c)
	}
	if c := get(v1.PathHealth); c != http.StatusOK {
		t.Fatalf("healthz: %d", c)
	}
	ready.Store(true)
	if c := get(v1.PathReady); c != http.StatusOK {
		t.Fatalf("readyz after: %d", c)
	}
}

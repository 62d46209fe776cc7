package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/web"
)

// consoleFiles serves the embedded console under /console/.
var consoleFiles = http.StripPrefix("/console/", http.FileServer(http.FS(web.Console)))

// console serves the web console's files. They are the same for every
// caller; the page reads and changes state only through the API.
func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	consoleFiles.ServeHTTP(w, r)
}

// getHistory answers the samples leafd keeps of declared metrics and
// program runs (the console's charts); ?samples=N, the last N only (the
// page reads the whole history once, then what is new).
func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	n := 0
	if v := r.URL.Query().Get("samples"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("samples %q is not a positive number", v))
			return
		}
	}
	if s.History == nil {
		writeJSON(w, http.StatusOK, &v1.History{Times: []time.Time{}, Series: []v1.Series{}})
		return
	}
	writeJSON(w, http.StatusOK, s.History.Snapshot(n))
}

// getCertificates answers the TLS listener's certificates and the time
// each has left; without a TLS listener, TLS is false.
func (s *Server) getCertificates(w http.ResponseWriter, r *http.Request) {
	if s.Certificates == nil {
		writeJSON(w, http.StatusOK, v1.Certificates{Certificates: []v1.Certificate{}})
		return
	}
	writeJSON(w, http.StatusOK, s.Certificates())
}

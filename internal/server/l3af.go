package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/leaf-ebpf/leaf/internal/l3af"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
)

// The L3AF API: l3afd's routes and payloads (see internal/l3af). Every
// change goes through the reconciler like PUT /v1/state; errors keep
// leaf's status codes (4xx for the caller's mistakes, where l3afd
// answered 500).

// l3afPrefix is where l3afd serves its API.
const l3afPrefix = "/l3af/configs/{version}"

// l3afService returns the service, or answers 404 when leafd serves no
// L3AF API or the API version is not l3afd's v1.
func (s *Server) l3afService(w http.ResponseWriter, r *http.Request) *l3af.Service {
	if s.L3AF == nil {
		writeError(w, http.StatusNotFound, errors.New("leafd serves no L3AF API"))
		return nil
	}
	if v := r.PathValue("version"); v != "v1" {
		writeError(w, http.StatusNotFound, fmt.Errorf("L3AF API version %q: leafd serves v1", v))
		return nil
	}
	return s.L3AF
}

// l3afChange reads a payload and applies it with apply.
func l3afChange[T any](s *Server, apply func(*l3af.Service, *http.Request, T, bool) (*l3af.Result, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		svc := s.l3afService(w, r)
		if svc == nil {
			return
		}
		body, dryRun, ok := s.changeRequest(w, r)
		if !ok {
			return
		}
		var payload T
		if err := json.Unmarshal(body, &payload); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("payload: %w", err))
			return
		}
		res, err := apply(svc, r, payload, dryRun)
		switch {
		case errors.Is(err, l3af.ErrUnknownProgram):
			writeError(w, http.StatusNotFound, err)
		case errors.Is(err, l3af.ErrConflict), errors.Is(err, reconciler.ErrConflict):
			writeError(w, http.StatusConflict, err)
		case err != nil:
			s.applyError(w, err)
		default:
			writeJSON(w, http.StatusOK, res)
		}
	}
}

func (s *Server) l3afAdd() http.HandlerFunc {
	return l3afChange(s, func(svc *l3af.Service, r *http.Request, p l3af.Config, dry bool) (*l3af.Result, error) {
		return svc.Add(r.Context(), p, dry)
	})
}

func (s *Server) l3afUpdate() http.HandlerFunc {
	return l3afChange(s, func(svc *l3af.Service, r *http.Request, p l3af.Config, dry bool) (*l3af.Result, error) {
		return svc.Update(r.Context(), p, dry)
	})
}

func (s *Server) l3afDelete() http.HandlerFunc {
	return l3afChange(s, func(svc *l3af.Service, r *http.Request, p []l3af.Names, dry bool) (*l3af.Result, error) {
		return svc.Delete(r.Context(), p, dry)
	})
}

// l3afGet answers l3afd's GET: every interface's programs, or one
// interface's (an object, empty lists when none, as l3afd answers).
func (s *Server) l3afGet(w http.ResponseWriter, r *http.Request) {
	svc := s.l3afService(w, r)
	if svc == nil {
		return
	}
	iface := r.PathValue("iface")
	cfg, err := svc.Config(iface)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if iface == "" {
		if cfg == nil {
			cfg = l3af.Config{}
		}
		writeJSON(w, http.StatusOK, cfg)
		return
	}
	if len(cfg) == 0 {
		writeJSON(w, http.StatusOK, l3af.HostConfig{HostName: svc.HostName(), Iface: iface, BPFPrograms: &l3af.Programs{}})
		return
	}
	writeJSON(w, http.StatusOK, cfg[0])
}

// l3afRestart answers l3afd's graceful restart truthfully: leafd hands
// nothing over, since its programs stay attached while it restarts.
func (s *Server) l3afRestart(w http.ResponseWriter, r *http.Request) {
	if s.l3afService(w, r) == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"restarted": false,
		"message":   "nothing to do: leafd keeps every program attached while it stops and starts, so it needs no hand-over; restart or upgrade leafd with its service manager",
	})
}

package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// getReady answers 200 once the first reconciliation finished, so that an
// orchestrator does not route work to a leafd still adopting its programs.
func (s *Server) getReady(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil && !s.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting: the first reconciliation has not finished"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// getEvents returns the retained events after ?since=SEQ as a JSON array,
// or with ?follow=true streams them, then every new one, as
// newline-delimited JSON until the client goes away.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	follow, err := boolQuery(r, "follow")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		if since, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query parameter since: %q is not a sequence number", v))
			return
		}
	}
	if !follow {
		writeJSON(w, http.StatusOK, s.Events.Since(since))
		return
	}
	s.streamEvents(w, r, since)
}

func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, since uint64) {
	ctx, cancel, rc := s.startStream(w, r)
	defer cancel()
	enc := json.NewEncoder(w)
	for {
		evs, err := s.Events.Wait(ctx, since)
		if err != nil {
			return
		}
		// A follower may stay for days: lift the server's write timeout
		// for each batch rather than cutting the stream.
		rc.SetWriteDeadline(time.Now().Add(time.Minute))
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return
			}
			since = e.Seq
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// startStream begins a newline-delimited JSON stream: its context ends
// with the request or when leafd shuts down (a follower must not hold
// shutdown up), and the 200 and headers are flushed at once so that a
// client sees the stream open before the first record.
func (s *Server) startStream(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc, *http.ResponseController) {
	ctx, cancel := context.WithCancel(r.Context())
	if s.Done != nil {
		go func() {
			select {
			case <-s.Done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	return ctx, cancel, rc
}

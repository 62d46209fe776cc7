package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
)

// audit authenticates the caller, stores the identity in the request's
// context and, when the answer is written, logs one audit line with
// constant keys: who (via, subject, role), what (method, path) and the
// result (code).
func (s *Server) audit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		id, authErr := s.authenticate(r)
		defer func() {
			s.Logger.Info("audit",
				"via", string(id.Via), "subject", id.Subject, "san", id.SAN, "role", id.Role.String(),
				"method", r.Method, "path", r.URL.Path, "code", sw.code(),
				"duration_ms", time.Since(start).Milliseconds())
		}()
		if authErr != nil {
			writeError(sw, authErr.Code, authErr)
			return
		}
		next.ServeHTTP(sw, r.WithContext(auth.WithIdentity(r.Context(), id)))
	})
}

func (s *Server) authenticate(r *http.Request) (auth.Identity, *auth.Error) {
	if s.Auth == nil {
		return auth.IdentityFrom(r.Context()), nil
	}
	id, err := s.Auth.Authenticate(r)
	if err != nil {
		id = auth.Identity{Via: auth.ViaNone, Subject: "anonymous"}
	}
	return id, err
}

// guard lets the request through to rt's handler only if the caller has
// the role rt needs, and, for a mutating call or an expensive read, is
// within its rate.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := auth.IdentityFrom(r.Context())
		if err := auth.Authorize(id, rt.need(r)); err != nil {
			writeError(w, err.Code, err)
			return
		}
		if (mutating(r.Method) || rt.expensive()) && s.Limiter != nil {
			if wait := s.Limiter.Wait(id.Key); wait > 0 {
				w.Header().Set("Retry-After", retryAfter(wait))
				writeError(w, http.StatusTooManyRequests, errTooMany(id, wait))
				return
			}
		}
		ctx, release := s.holdCredentials(r, rt.need(r))
		defer release()
		rt.handler(w, r.WithContext(ctx))
	})
}

// DefaultRecheck is how often a request still running checks that its
// caller's credentials hold.
const DefaultRecheck = time.Second

// holdCredentials returns the request's context, cancelled as soon as
// the caller's credentials stop granting need: a token revoked, its key
// rotated or expired, a client certificate revoked by a new CRL or no
// longer chaining to a reloaded CA bundle. Only requests that run longer
// than the recheck interval (event streams, profiles) ever check; the
// rest only pay for a stopped timer.
func (s *Server) holdCredentials(r *http.Request, need auth.Role) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(r.Context())
	if s.Auth == nil || need == auth.None {
		return ctx, func() { cancel(nil) }
	}
	every := s.Recheck
	if every <= 0 {
		every = DefaultRecheck
	}
	var mu sync.Mutex
	var timer *time.Timer
	var check func()
	check = func() {
		id, err := s.Auth.Authenticate(r)
		if err == nil {
			if aerr := auth.Authorize(id, need); aerr != nil {
				err = aerr
			}
		}
		if err != nil {
			if s.Logger != nil {
				s.Logger.Info("ending a request: the caller's credentials no longer hold", "path", r.URL.Path, "error", err.Error())
			}
			cancel(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			timer.Reset(every)
		}
	}
	mu.Lock()
	timer = time.AfterFunc(every, check)
	mu.Unlock()
	return ctx, func() {
		mu.Lock()
		timer.Stop()
		mu.Unlock()
		cancel(nil)
	}
}

// expensive reads walk every repository or a whole map: they spend from
// the caller's bucket like changes do, so a reader in a loop cannot keep
// leafd busy for everyone.
func (rt route) expensive() bool {
	return rt.method == http.MethodGet && (rt.path == v1.PathPackages || strings.HasSuffix(rt.path, "/maps/{map}"))
}

func mutating(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// statusWriter remembers the status code for the audit line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (pprof's
// profile and trace extend the write deadline through it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

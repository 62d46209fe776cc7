package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/auth/tlsauth"
	"github.com/leaf-ebpf/leaf/internal/auth/token"
	"github.com/leaf-ebpf/leaf/internal/config"
	"github.com/leaf-ebpf/leaf/internal/server"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// security is everything that decides who may call the API.
type security struct {
	auth    *auth.Authenticator
	tokens  *token.Service   // nil when tokens are off
	tls     *tlsauth.Server  // nil without the TLS listener
	watcher *tlsauth.Watcher // nil without the TLS listener
	limiter *server.RateLimiter
}

// newSecurity builds the authenticator, token service and TLS material.
// Any problem — a key file others can read, a certificate that does not
// load — stops start-up with a message naming the file.
func newSecurity(cfg config.Config, st *store.Store, log *slog.Logger) (*security, error) {
	unixPolicy, err := auth.NewUnixPolicy(cfg.SocketRoles, uint32(os.Geteuid()))
	if err != nil {
		return nil, err
	}
	sec := &security{
		auth:    &auth.Authenticator{Unix: unixPolicy},
		limiter: server.NewRateLimiter(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst),
	}
	if cfg.Tokens != nil {
		if sec.tokens, err = newTokens(*cfg.Tokens, st); err != nil {
			return nil, err
		}
		sec.tokens.KeyProblem = keyProblemLogger(log)
		sec.auth.Tokens = sec.tokens
		key, _ := sec.tokens.Keys.Current()
		log.Info("bearer tokens enabled", "key", sec.tokens.Keys.Describe(), "key_id", key.ID)
	}
	if cfg.TLS != nil {
		if err := sec.setupTLS(cfg, log); err != nil {
			return nil, err
		}
	}
	return sec, nil
}

func newTokens(tc config.TokensConfig, st *store.Store) (*token.Service, error) {
	var ks *token.FileKeyStore
	var err error
	if tc.KeyFile != "" {
		ks, err = token.OpenFile(tc.KeyFile)
	} else {
		ks, err = token.OpenCredential(tc.KeyCredential)
	}
	if err != nil {
		return nil, err
	}
	svc := &token.Service{Keys: ks, Store: st, DefaultTTL: 24 * time.Hour, MaxTTL: 30 * 24 * time.Hour}
	if tc.MaxTTL > 0 {
		svc.MaxTTL = time.Duration(tc.MaxTTL)
	}
	if tc.DefaultTTL > 0 {
		svc.DefaultTTL = time.Duration(tc.DefaultTTL)
	}
	svc.DefaultTTL = min(svc.DefaultTTL, svc.MaxTTL)
	return svc, nil
}

func (sec *security) setupTLS(cfg config.Config, log *slog.Logger) error {
	t := cfg.TLS
	anyRole := t.AnyCertRole
	if anyRole == auth.None {
		anyRole = auth.Reader
	}
	subjects, err := auth.NewSubjectPolicy(t.Subjects, anyRole)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	sec.auth.Subjects = subjects
	minVersion, err := tlsauth.ParseMinVersion(t.MinVersion)
	if err != nil {
		return err
	}
	sec.watcher = &tlsauth.Watcher{Window: time.Duration(cfg.CertWarningWindow), Logger: log}
	sec.tls, err = tlsauth.New(tlsauth.Config{
		CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile, CRLFile: t.CRLFile, RefuseStaleCRL: t.RefuseStaleCRL,
		MinVersion: minVersion,
		// With tokens on, a client may come without a certificate and
		// present a token instead; any certificate sent must still verify.
		RequireClientCert: cfg.Tokens == nil,
		Logger:            log, Watcher: sec.watcher,
	})
	if err == nil {
		sec.auth.CertCheck = sec.tls.Recheck
	}
	return err
}

// listenTLS opens the TCP listener; every connection is TLS.
func (sec *security) listenTLS(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS listener: %w", err)
	}
	return tls.NewListener(ln, sec.tls.TLSConfig()), nil
}

// watch reloads the TLS material and checks certificate expiry at start
// and every interval, until ctx ends.
func (sec *security) watch(ctx context.Context, interval time.Duration) {
	if sec.watcher == nil {
		return
	}
	go sec.watcher.Run(ctx, interval, func() { sec.tls.Reload() })
}

// keyProblemLogger logs why the token key is unusable, once per distinct
// reason rather than once per refused request.
func keyProblemLogger(log *slog.Logger) func(error) {
	var mu sync.Mutex
	last := ""
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err.Error() != last {
			last = err.Error()
			log.Error("token signing key unusable: bearer tokens are refused until it is fixed", "error", err)
		}
	}
}

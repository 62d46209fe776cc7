package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// consoleCmd serves leafd's web console on a loopback port for hosts whose
// API is only the unix socket: the browser talks to leaf, leaf to leafd
// with leaf's own credentials. A one-time token in the printed URL logs
// the browser in (as kubectl proxy and Jupyter do); it works once and
// then lives on only as a session cookie of that browser.
func consoleCmd(g *globals) *cobra.Command {
	var address string
	c := &cobra.Command{
		Use:   "console",
		Short: "Serve leafd's web console on 127.0.0.1 and print its one-time login URL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", address)
			if err != nil {
				return err
			}
			if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
				ln.Close()
				return fmt.Errorf("--address %s: the console only listens on a loopback address", address)
			}
			gate, err := newConsoleGate(g.client().Proxy(), ln.Addr().(*net.TCPAddr).Port)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: gate, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(g.out, "leaf console: http://%s/login?token=%s\n", ln.Addr(), gate.login)
			fmt.Fprintln(g.out, "(the link logs in once; Ctrl-C stops the console)")
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			select {
			case <-sig:
				return srv.Close()
			case err := <-errc:
				return err
			}
		},
	}
	c.Flags().StringVar(&address, "address", "127.0.0.1:0", "loopback address to serve on (port 0: any free port)")
	return c
}

// consoleGate lets through only the browser that used the login token.
type consoleGate struct {
	next  http.Handler
	login string

	// cookie is per port: browsers share cookies across a host's ports.
	cookie string

	mu      sync.Mutex
	used    bool
	session string
}

func randomHex() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func newConsoleGate(next http.Handler, port int) (*consoleGate, error) {
	login, err := randomHex()
	if err != nil {
		return nil, err
	}
	session, err := randomHex()
	if err != nil {
		return nil, err
	}
	return &consoleGate{next: next, login: login, session: session, cookie: fmt.Sprintf("leaf_console_%d", port)}, nil
}

func (gt *consoleGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/login" {
		gt.mu.Lock()
		ok := !gt.used && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(gt.login)) == 1
		if ok {
			gt.used = true
		}
		gt.mu.Unlock()
		if !ok {
			http.Error(w, "login token wrong or already used: run leaf console again", http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: gt.cookie, Value: gt.session, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	ck, err := r.Cookie(gt.cookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(gt.session)) != 1 {
		http.Error(w, "not logged in: open the URL leaf console printed", http.StatusUnauthorized)
		return
	}
	// Changes only from the console's own pages: another site's form
	// cannot post through the cookie (SameSite) nor pass this check.
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	switch {
	case r.URL.Path == "/":
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	case strings.HasPrefix(r.URL.Path, "/console/"), strings.HasPrefix(r.URL.Path, "/v1/"):
		gt.next.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "http://"+r.Host
}

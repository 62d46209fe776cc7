// Command peerclient makes one HTTP request over a unix socket and prints
// the answer as JSON ({"code":..,"body":..}, or {"error":..} when it
// cannot connect). Tests run it under another uid and gid
// (syscall.Credential) so leafd sees a different peer.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	socket := flag.String("socket", "", "unix socket")
	method := flag.String("method", "GET", "HTTP method")
	path := flag.String("path", "/healthz", "path and query")
	body := flag.String("body", "", "request body")
	token := flag.String("token", "", "bearer token")
	flag.Parse()
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", *socket)
		},
	}}
	var rd io.Reader
	if *body != "" {
		rd = strings.NewReader(*body)
	}
	req, _ := http.NewRequest(*method, "http://leafd"+*path, rd)
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	out := map[string]any{}
	resp, err := hc.Do(req)
	if err != nil {
		out["error"] = err.Error()
	} else {
		b, _ := io.ReadAll(resp.Body)
		out["code"], out["body"] = resp.StatusCode, string(b)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

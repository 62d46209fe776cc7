// Package client is the typed Go client of leafd's API. The leaf CLI uses
// it; so can any other program.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// DefaultSocket is leafd's default API socket.
const DefaultSocket = "/run/leaf/leafd.sock"

// Client talks to one leafd.
type Client struct {
	http  *http.Client
	base  string
	token string
}

// New returns a client for the unix socket at path.
func New(socket string) *Client {
	c, _ := NewWithOptions(Options{Socket: socket})
	return c
}

// Options says how to reach leafd: its unix socket, or a remote leafd
// over TLS with a client certificate and/or a bearer token.
type Options struct {
	// Socket is the unix socket (DefaultSocket if Server is empty too).
	Socket string
	// Server is a remote leafd, https://host:port.
	Server string
	// CAFile verifies the server's certificate; empty uses the system's
	// roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key.
	CertFile, KeyFile string
	// Token is a bearer token (leaf token issue).
	Token string
	// TLSConfig, if set, is used as is instead of the files.
	TLSConfig *tls.Config
	// Timeout bounds each call (5 minutes if zero).
	Timeout time.Duration
}

// NewWithOptions returns a client for o.
func NewWithOptions(o Options) (*Client, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	if o.Server == "" {
		if o.CertFile != "" || o.KeyFile != "" || o.CAFile != "" {
			return nil, errors.New("client: a CA, certificate or key needs a server (https://host:port); the unix socket uses none")
		}
		socket := o.Socket
		if socket == "" {
			socket = DefaultSocket
		}
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}
		return &Client{http: &http.Client{Transport: tr, Timeout: timeout}, base: "http://leafd", token: o.Token}, nil
	}
	u, err := url.Parse(o.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("client: server %q: want https://host:port (leafd's TCP listener is always TLS)", o.Server)
	}
	tlsConf := o.TLSConfig
	if tlsConf == nil {
		if tlsConf, err = loadTLS(o); err != nil {
			return nil, err
		}
	}
	tr := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: false}
	return &Client{http: &http.Client{Transport: tr, Timeout: timeout}, base: "https://" + u.Host, token: o.Token}, nil
}

func loadTLS(o Options) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("client: CA: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: CA %s holds no PEM certificate", o.CAFile)
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("client: give both a certificate and its key, or neither")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client: certificate %s / key %s: %w", o.CertFile, o.KeyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// APIError is an error answer from leafd.
type APIError struct {
	StatusCode int
	Body       v1.Error
}

func (e *APIError) Error() string {
	if len(e.Body.Details) <= 1 {
		return e.Body.Error
	}
	var b strings.Builder
	b.WriteString(e.Body.Error + ":")
	for _, d := range e.Body.Details {
		b.WriteString("\n  - ")
		if d.Attachment != "" {
			fmt.Fprintf(&b, "attachment %q: ", d.Attachment)
		}
		if d.Field != "" {
			b.WriteString(d.Field + ": ")
		}
		b.WriteString(d.Message)
		for _, l := range d.VerifierLog {
			b.WriteString("\n      " + l)
		}
	}
	return b.String()
}

// Kind is the answer's kind (v1.Error.Kind, one of the v1.ErrorKind
// constants): what sort of failure, for a program to act on.
func (e *APIError) Kind() string { return e.Body.Kind }

// maxRetries bounds how often a call rate-limited by leafd (429) is
// retried after the wait leafd asks for.
const maxRetries = 5

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, method, u, body)
		if err != nil {
			return err
		}
		wait, retry := retryWait(resp)
		if !retry || attempt == maxRetries {
			return decodeAnswer(resp, out)
		}
		resp.Body.Close()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (c *Client) send(ctx context.Context, method, u string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("connect to leafd: %w", err)
	}
	return resp, nil
}

// retryWait says whether leafd rate-limited the call and how long it asks
// the client to wait (at most 5s).
func retryWait(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 0 {
		secs = 1
	}
	return min(time.Duration(secs)*time.Second, 5*time.Second), true
}

func decodeAnswer(resp *http.Response, out any) error {
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		apiErr := &APIError{StatusCode: resp.StatusCode}
		if json.Unmarshal(data, &apiErr.Body) != nil || apiErr.Body.Error == "" {
			apiErr.Body.Error = fmt.Sprintf("leafd answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

func dryRunQuery(dryRun bool) url.Values {
	if !dryRun {
		return nil
	}
	return url.Values{"dryRun": {"true"}}
}

// Apply makes doc (YAML or JSON) the desired state.
func (c *Client) Apply(ctx context.Context, doc []byte, dryRun bool) (*v1.ApplyResult, error) {
	var res v1.ApplyResult
	return &res, c.do(ctx, http.MethodPut, v1.PathState, dryRunQuery(dryRun), doc, &res)
}

// Desired returns the desired-state document leafd holds, as JSON.
func (c *Client) Desired(ctx context.Context) (json.RawMessage, error) {
	var raw json.RawMessage
	// Call first: the order in which "return raw, c.do(...)" would read raw
	// and run the call is unspecified.
	err := c.do(ctx, http.MethodGet, v1.PathState, nil, nil, &raw)
	return raw, err
}

// Status returns every attachment as the kernel holds it.
func (c *Client) Status(ctx context.Context) (*v1.Status, error) {
	var st v1.Status
	return &st, c.do(ctx, http.MethodGet, v1.PathStatus, nil, nil, &st)
}

// Delete removes an attachment from the desired state, detaching it.
func (c *Client) Delete(ctx context.Context, name string, dryRun bool) (*v1.ApplyResult, error) {
	var res v1.ApplyResult
	return &res, c.do(ctx, http.MethodDelete, v1.PathAttachments+"/"+url.PathEscape(name), dryRunQuery(dryRun), nil, &res)
}

// Maps lists an attachment's maps.
func (c *Client) Maps(ctx context.Context, attachment string) (*v1.MapList, error) {
	var ml v1.MapList
	return &ml, c.do(ctx, http.MethodGet, v1.PathAttachments+"/"+url.PathEscape(attachment)+"/maps", nil, nil, &ml)
}

// DumpMap returns the entries of one map (the first page of 10000).
func (c *Client) DumpMap(ctx context.Context, attachment, name string) (*v1.MapDump, error) {
	return c.DumpMapQuery(ctx, attachment, name, v1.MapQuery{})
}

// DumpMapQuery returns the entries of one map q selects.
func (c *Client) DumpMapQuery(ctx context.Context, attachment, name string, q v1.MapQuery) (*v1.MapDump, error) {
	v := url.Values{}
	for k, s := range map[string]string{"key": q.Key, "after": q.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.NonZero {
		v.Set("nonzero", "true")
	}
	var d v1.MapDump
	return &d, c.do(ctx, http.MethodGet, v1.PathAttachments+"/"+url.PathEscape(attachment)+"/maps/"+url.PathEscape(name), v, nil, &d)
}

// Packages lists the packages leafd's repositories offer.
func (c *Client) Packages(ctx context.Context) ([]v1.Package, error) {
	var pkgs []v1.Package
	err := c.do(ctx, http.MethodGet, v1.PathPackages, nil, nil, &pkgs)
	return pkgs, err
}

// Stats reports whether kernel BPF statistics are on.
func (c *Client) Stats(ctx context.Context) (*v1.Stats, error) {
	var s v1.Stats
	return &s, c.do(ctx, http.MethodGet, v1.PathStats, nil, nil, &s)
}

// SetStats asks leafd to turn kernel BPF statistics on or off.
func (c *Client) SetStats(ctx context.Context, on bool) (*v1.Stats, error) {
	body, _ := json.Marshal(v1.Stats{Enabled: on})
	var s v1.Stats
	return &s, c.do(ctx, http.MethodPut, v1.PathStats, nil, body, &s)
}

// Health checks that leafd answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, v1.PathHealth, nil, nil, nil)
}

// Whoami returns the caller as leafd sees it: how it authenticated, its
// subject and its role.
func (c *Client) Whoami(ctx context.Context) (*v1.Whoami, error) {
	var w v1.Whoami
	return &w, c.do(ctx, http.MethodGet, v1.PathWhoami, nil, nil, &w)
}

// IssueToken asks leafd for a bearer token (admin).
func (c *Client) IssueToken(ctx context.Context, req v1.TokenRequest) (*v1.IssuedToken, error) {
	body, _ := json.Marshal(req)
	var t v1.IssuedToken
	return &t, c.do(ctx, http.MethodPost, v1.PathTokens, nil, body, &t)
}

// Tokens lists the tokens leafd issued (admin).
func (c *Client) Tokens(ctx context.Context) ([]v1.TokenInfo, error) {
	var list []v1.TokenInfo
	err := c.do(ctx, http.MethodGet, v1.PathTokens, nil, nil, &list)
	return list, err
}

// RevokeToken revokes a token by ID (admin).
func (c *Client) RevokeToken(ctx context.Context, id string) (*v1.TokenInfo, error) {
	var info v1.TokenInfo
	return &info, c.do(ctx, http.MethodDelete, v1.PathTokens+"/"+url.PathEscape(id), nil, nil, &info)

}

// Ready reports whether leafd finished its first reconciliation (nil) or
// not yet (an *APIError with status 503).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, v1.PathReady, nil, nil, nil)
}

// Events returns the retained events with a sequence number above since.
func (c *Client) Events(ctx context.Context, since uint64) ([]v1.Event, error) {
	var evs []v1.Event
	err := c.do(ctx, http.MethodGet, v1.PathEvents, url.Values{"since": {strconv.FormatUint(since, 10)}}, nil, &evs)
	return evs, err
}

// FollowEvents calls fn with every event above since, as leafd records
// them, until ctx is done, fn returns an error, or leafd goes away. It
// returns ctx's error when ctx ended it.
func (c *Client) FollowEvents(ctx context.Context, since uint64, fn func(v1.Event) error) error {
	q := url.Values{"follow": {"true"}, "since": {strconv.FormatUint(since, 10)}}
	resp, err := c.openStream(ctx, v1.PathEvents, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e v1.Event
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("event stream: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// openStream GETs a newline-delimited JSON stream: no overall timeout,
// only ctx; an answer other than 200 is an *APIError.
func (c *Client) openStream(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("connect to leafd: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		apiErr := &APIError{StatusCode: resp.StatusCode}
		if json.Unmarshal(data, &apiErr.Body) != nil || apiErr.Body.Error == "" {
			apiErr.Body.Error = fmt.Sprintf("leafd answered %s", resp.Status)
		}
		return nil, apiErr
	}
	return resp, nil
}

// Tail streams the records of an attachment's ring buffer or perf event
// array to fn until max records or the duration (0: leafd's defaults),
// then returns the totals.
func (c *Client) Tail(ctx context.Context, attachment, name string, max int, d time.Duration, fn func(v1.TailEvent) error) (*v1.TailEnd, error) {
	q := url.Values{}
	if max > 0 {
		q.Set("max", strconv.Itoa(max))
	}
	if d > 0 {
		q.Set("for", d.String())
	}
	resp, err := c.openStream(ctx, v1.PathAttachments+"/"+url.PathEscape(attachment)+"/maps/"+url.PathEscape(name)+"/records", q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev v1.TailEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("tail stream: %w", err)
		}
		if ev.End != nil {
			return ev.End, nil
		}
		if err := fn(ev); err != nil {
			return nil, err
		}
	}
}

// Package client is the typed Go client of leafd's API. The leaf CLI uses
// it; so can any other program.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// DefaultSocket is leafd's default API socket.
const DefaultSocket = "/run/leaf/leafd.sock"

// Client talks to one leafd.
type Client struct {
	http *http.Client
	base string
}

// New returns a client for the unix socket at path.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}, base: "http://leafd"}
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
	}
	return b.String()
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("connect to leafd: %w", err)
	}
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

// DumpMap returns the entries of one map.
func (c *Client) DumpMap(ctx context.Context, attachment, name string) (*v1.MapDump, error) {
	var d v1.MapDump
	return &d, c.do(ctx, http.MethodGet, v1.PathAttachments+"/"+url.PathEscape(attachment)+"/maps/"+url.PathEscape(name), nil, nil, &d)
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

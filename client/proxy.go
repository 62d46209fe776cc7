package client

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// Proxy forwards requests to leafd over this client's connection (unix
// socket or TLS) with its credentials, so leafd sees the client's
// identity and applies its role. leaf console serves the web console
// through it. The browser's cookies and authorization never reach leafd.
func (c *Client) Proxy() http.Handler {
	target, _ := url.Parse(c.base)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Authorization")
			if c.token != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+c.token)
			}
		},
		Transport: c.http.Transport,
		// The event stream must reach the browser as it comes.
		FlushInterval: -1,
	}
}

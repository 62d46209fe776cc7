package pkgsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/repository"
)

// getter reads files from a base that is an http(s) URL or a local
// directory, never more than a cap.
type getter struct {
	base   string // URL or directory, without a trailing slash
	client *http.Client
}

func (g *getter) local() bool {
	return !strings.HasPrefix(g.base, "http://") && !strings.HasPrefix(g.base, "https://")
}

// join appends slash-separated parts that were validated by the caller
// (package names and versions match strict patterns).
func (g *getter) join(parts ...string) string {
	return g.base + "/" + strings.Join(parts, "/")
}

// get reads loc (made by join, or an absolute URL on the same scheme),
// at most max bytes. A missing file wraps repository.ErrNotFound.
func (g *getter) get(ctx context.Context, loc string, max int64) ([]byte, error) {
	var r io.ReadCloser
	if g.local() {
		f, err := os.Open(loc)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", repository.ErrNotFound, loc)
		}
		if err != nil {
			return nil, err
		}
		if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("%s: not a regular file", loc)
		}
		r = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
		if err != nil {
			return nil, err
		}
		resp, err := g.client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusNotFound {
			resp.Body.Close()
			return nil, fmt.Errorf("%w: %s", repository.ErrNotFound, loc)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s", loc, resp.Status)
		}
		if resp.ContentLength > max {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %d bytes, more than the %d allowed", loc, resp.ContentLength, max)
		}
		r = resp.Body
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", loc, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: more than the %d bytes allowed", loc, max)
	}
	return data, nil
}

// resolveRef resolves a reference found in an index against the index's
// location. Only relative references, or absolute ones on the same
// scheme and host, are followed: an index cannot point leafd elsewhere.
func (g *getter) resolveRef(ref string) (string, error) {
	if g.local() {
		if strings.Contains(ref, "://") || strings.HasPrefix(ref, "/") || strings.Contains(ref, "..") || strings.Contains(ref, "\\") {
			return "", fmt.Errorf("index entry %q must be a relative path", ref)
		}
		return g.join(ref), nil
	}
	base, err := url.Parse(g.base + "/")
	if err != nil {
		return "", err
	}
	u, err := base.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("index entry %q: %w", ref, err)
	}
	if u.Scheme != base.Scheme || u.Host != base.Host {
		return "", fmt.Errorf("index entry %q leaves %s://%s", ref, base.Scheme, base.Host)
	}
	return u.String(), nil
}

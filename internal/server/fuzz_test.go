package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// The request decoders take hostile input from any caller with a role.
// They must never panic, and must either fail or produce a value that
// encodes again. Run with: go test -fuzz FuzzDecodeState ./internal/server
// (normal test runs use the seeds only).

var stateSeeds = []string{
	"apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: t}\nspec:\n  attachments: []\n",
	`{"apiVersion":"leaf.dev/v1alpha1","kind":"HostState","metadata":{"name":"t"},"spec":{"attachments":[{"name":"a","package":"portfilter@1.0.0","hook":{"type":"xdp","interface":"eth0"},"params":{"ports":[1,2]}}]}}`,
	"spec: {attachments: [{name: a, name: b}]}",
	"&a [*a, *a]",
	"{\"spec\": 1e999}",
	"\xff\xfe",
	"",
}

func FuzzDecodeState(f *testing.F) {
	for _, s := range stateSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var st desired.State
		if err := yamljson.Decode(data, &st); err != nil {
			return
		}
		_ = st.Validate()
	})
}

func FuzzDecodeTokenRequest(f *testing.F) {
	for _, s := range []string{`{"subject":"ci","role":"reader","ttl":"1h"}`, `{"subject":1}`, `{"role":"admin","extra":true}`, `subject: x`, "null", "[]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := httptest.NewRequest(http.MethodPost, v1.PathTokens, bytes.NewReader(data))
		w := httptest.NewRecorder()
		req, err := decodeTokenRequest(w, r)
		if err == nil && len(data) > 4096 {
			t.Fatalf("accepted a %d-byte body over the 4096-byte limit", len(data))
		}
		_ = req
	})
}

func FuzzDecodeStats(f *testing.F) {
	for _, s := range []string{`{"enabled":true}`, `{"enabled":"yes"}`, `enabled: on`, `{}`, `{"enabled":true,"enabled":false}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s v1.Stats
		_ = yamljson.Decode(data, &s)
	})
}

func FuzzBoolQuery(f *testing.F) {
	for _, s := range []string{"dryRun=true", "dryRun=1", "dryRun=yes", "dryRun=%zz", "dryRun=true&dryRun=false", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest(http.MethodPut, "/v1/state", nil)
		r.URL.RawQuery = q
		dry, err := boolQuery(r, "dryRun")
		// The role check and the handler read the same parameter: a query
		// that is not a clear true must never lower the role needed.
		rt := route{role: 3, dryRunRole: 2}
		if need := rt.need(r); (err != nil || !dry) && need != 3 {
			t.Fatalf("query %q: dry=%v err=%v but the role needed dropped to %d", q, dry, err, need)
		}
	})
}

package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestLinkTimeVersionWins(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.8.7"
	in := Get()
	if in.Version != "v9.8.7" || in.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", in)
	}
	if s := in.String(); !strings.HasPrefix(s, "v9.8.7") || !strings.HasSuffix(s, runtime.Version()) {
		t.Fatalf("String() = %q", s)
	}
	Version = ""
	if v := Get().Version; v == "" {
		t.Fatal("no version without a link-time one")
	}
}

func TestStringShortensTheRevision(t *testing.T) {
	s := Info{Version: "devel", Revision: "0123456789abcdef0123", Modified: true, GoVersion: "go1.26.8"}.String()
	if s != "devel (rev 0123456789ab, modified) go1.26.8" {
		t.Fatalf("String() = %q", s)
	}
}

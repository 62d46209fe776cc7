package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leaf-ebpf/leaf/internal/version"
)

func TestBuildInfo(t *testing.T) {
	in := version.Get()
	want := `# HELP leaf_build_info Always 1; the labels are leafd's version, VCS revision and Go version.
# TYPE leaf_build_info gauge
leaf_build_info{goversion="` + in.GoVersion + `",revision="` + in.Revision + `",version="` + in.Version + `"} 1
`
	if err := testutil.CollectAndCompare(buildInfo(), strings.NewReader(want), "leaf_build_info"); err != nil {
		t.Fatal(err)
	}
}

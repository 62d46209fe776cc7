package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
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

type statusFunc func() (*v1.Status, error)

func (f statusFunc) Status() (*v1.Status, error) { return f() }

// A companion's restarts come from the status the reconciler reports.
func TestCompanionRestarts(t *testing.T) {
	c := &statusCollector{src: statusFunc(func() (*v1.Status, error) {
		return &v1.Status{Attachments: []v1.AttachmentStatus{
			{Name: "flows", HookType: "tc", State: v1.StateAttached, Companion: &v1.CompanionStatus{State: v1.CompanionRestarting, Restarts: 3}},
			{Name: "plain", HookType: "xdp", State: v1.StateAttached},
		}}, nil
	})}
	want := `# HELP leaf_companion_restarts_total Times the attachment's companion exited and was restarted.
# TYPE leaf_companion_restarts_total counter
leaf_companion_restarts_total{attachment="flows"} 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "leaf_companion_restarts_total"); err != nil {
		t.Fatal(err)
	}
}

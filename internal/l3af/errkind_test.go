package l3af

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// TestAdmitKeepsErrorKinds: a KFaaS repository that cannot be reached
// fails an L3AF program with kind unavailable (503), as it fails
// PUT /v1/state, and the cause stays reachable with errors.Is.
func TestAdmitKeepsErrorKinds(t *testing.T) {
	// A loopback port nobody listens on any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/kfaas"
	ln.Close()
	hints := &Catalog{}
	repo, err := pkgsource.Open(pkgsource.Config{Name: "kfaas", Type: pkgsource.RepoKFaaS, URL: url, Platform: "bookworm", Hints: hints,
		Trust: pkgsource.TrustConfig{AllowUnsigned: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{HostName: "h", Repos: []Repo{{Name: "kfaas", URLs: []string{url}}}}, nil, repository.Set{repo}, hints)
	var cfg Config
	payload := `[{"host_name": "h", "iface": "eth0", "bpf_programs": {"xdp_ingress": [{
  "name": "portdrop", "seq_id": 1, "artifact": "l3af_portdrop.tar.gz", "version": "1.0",
  "admin_status": "enabled", "prog_type": "xdp", "object_file": "portdrop.bpf.o",
  "entry_function_name": "_xdp_portdrop"}]}}]`
	if err := json.Unmarshal([]byte(payload), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.Learn(desired.Empty()); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.admit(context.Background(), cfg)
	var de desired.Errors
	if !errors.As(err, &de) || len(de) != 1 {
		t.Fatalf("admit: %v, want one document error", err)
	}
	if de[0].Field != "artifact" || de[0].Kind != desired.KindUnavailable || !errors.Is(err, repository.ErrUnavailable) {
		t.Errorf("error %+v (kind %q), want field artifact, kind %q, wrapping repository.ErrUnavailable", de[0], de[0].Kind, desired.KindUnavailable)
	}
}

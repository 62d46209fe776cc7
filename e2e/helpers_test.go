// Package e2e tests leafd and leaf end to end on the real kernel: leafd
// runs as a process on a private bpffs and socket, programs attach to veth
// pairs in throwaway network namespaces, and the tests send the traffic.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// doc builds a desired-state document from attachment YAML snippets.
func doc(attachments ...string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: test}\nspec:\n  attachments:")
	if len(attachments) == 0 {
		b.WriteString(" []")
	}
	b.WriteString("\n")
	for _, a := range attachments {
		for i, line := range strings.Split(strings.TrimSpace(a), "\n") {
			if i == 0 {
				b.WriteString("    - " + line + "\n")
			} else {
				b.WriteString("      " + line + "\n")
			}
		}
	}
	return []byte(b.String())
}

// portFilter is an attachment of the portfilter package on B's veth end.
func portFilter(p *testenv.Pair, name, version string, ports ...int) string {
	var ps []string
	for _, port := range ports {
		ps = append(ps, fmt.Sprint(port))
	}
	return fmt.Sprintf(`name: %s
package: portfilter@%s
hook: {type: xdp, interface: %s, netns: %s}
params: {ports: [%s]}`, name, version, p.IfB, p.NsB, strings.Join(ps, ", "))
}

func apply(t *testing.T, d *testenv.Daemon, document []byte) *v1.ApplyResult {
	t.Helper()
	res, err := d.Client.Apply(ctx(t), document, false)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, document)
	}
	return res
}

func status(t *testing.T, d *testenv.Daemon) map[string]v1.AttachmentStatus {
	t.Helper()
	st, err := d.Client.Status(ctx(t))
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	out := map[string]v1.AttachmentStatus{}
	for _, a := range st.Attachments {
		out[a.Name] = a
	}
	return out
}

func actionKinds(res *v1.ApplyResult) map[string]string {
	out := map[string]string{}
	for _, a := range res.Actions {
		out[a.Attachment] = a.Kind
	}
	return out
}

// xdpProgID asks the kernel (netlink) which XDP program the interface runs.
func xdpProgID(t *testing.T, netns, ifname string) uint32 {
	t.Helper()
	return testenv.XDPProgID(t, netns, ifname)
}

var _ = netlink.LinkByName

// pinTree lists every path under the bpffs root, to compare before/after.
func pinTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			out = append(out, strings.TrimPrefix(p, root))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

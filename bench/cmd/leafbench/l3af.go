package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/leaf-ebpf/leaf/bench"
)

// l3afMain is `leafbench l3af`: deploying one L3AF program through
// l3afd's API served by leafd, against leaf's own apply of the same
// desired state and the reference load+attach, interleaved in one run.
func l3afMain(args []string) {
	fs := flag.NewFlagSet("leafbench l3af", flag.ExitOnError)
	runs := fs.Int("runs", 20, "timed runs of each row, interleaved")
	verbose := fs.Bool("v", false, "print every timing to standard error")
	fs.Parse(args)
	if os.Geteuid() != 0 {
		fatal(errors.New("needs root (network namespaces, bpffs, BPF programs)"))
	}
	b := &benchmark{runs: *runs, verbose: *verbose, r: &bench.Runner{}, loadStart: loadavg()}
	b.runAndReport(b.runL3AF)
}

func (b *benchmark) runL3AF(ctx context.Context) error {
	leafd, err := b.buildLeafd()
	if err != nil {
		return err
	}
	if b.sb, err = bench.NewSandbox(b.r, 1); err != nil {
		return err
	}
	iface := b.sb.Ifaces[0]
	tree := filepath.Join(b.tmp, "kfaas")
	if err := bench.WriteL3AFTree(tree, bench.PortdropObject); err != nil {
		return err
	}
	cfg := filepath.Join(b.tmp, "leafd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories: [{name: l3af, type: kfaas, url: "file://%s", trust: {allowUnsigned: true}}]
l3af: {hostName: leafbench, netns: %s}
`, tree, b.sb.NsB)), 0o644); err != nil {
		return err
	}
	if b.d, err = bench.StartDaemon(b.r, leafd, "--config", cfg, "--metrics-address", "127.0.0.1:0", "--log-level", "info"); err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", b.d.Socket)
	}}}
	payload := bench.L3AFPayload("leafbench", iface)
	add := func() (time.Duration, error) {
		start := time.Now()
		resp, err := hc.Post("http://leafd/l3af/configs/v1/add", "application/json", bytes.NewReader(payload))
		if err != nil {
			return 0, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("POST /l3af/configs/v1/add: %s: %s", resp.Status, body)
		}
		return took, nil
	}
	// The desired state the L3AF call makes, for leaf's own apply of the
	// same program.
	if _, err := add(); err != nil {
		return err
	}
	doc, err := b.d.Client.Desired(ctx)
	if err != nil {
		return err
	}
	// Between rows: apply the empty document and let the kernel free what
	// ran. (Not waited for by ID: a cooperative member's PROG_ARRAY was
	// seen to outlive its program here.)
	settle := func() error {
		_, err := b.clear(ctx, false)
		time.Sleep(100 * time.Millisecond)
		bench.SettleRCU()
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	b.cmds = append(b.cmds,
		"interleaved, one of each per round, each from the empty state, 100 ms after the previous row was removed and the kernel's RCU settled (bench.SettleRCU):",
		"  L3AF:      POST /l3af/configs/v1/add of portdrop (l3afd's documented payload; file:// KFaaS tree, archive without leaf.yaml)",
		"  leaf:      PUT /v1/state of the desired state that call makes (client.Apply)",
		"  reference: bench.DirectPortdrop in leafbench's process: parse the object, load it, write map_args,",
		"             create the monitored key, link.AttachXDP (native); nothing fetched, verified, pinned or recorded",
	)
	var l3, own, ref []time.Duration
	for i := 0; i < b.runs; i++ {
		d, err := add()
		if err != nil {
			return err
		}
		l3 = append(l3, d)
		b.logf("l3af add: %s", d)
		if err := settle(); err != nil {
			return err
		}
		if d, err = b.apply(ctx, doc, 1, false); err != nil {
			return err
		}
		own = append(own, d)
		if err := settle(); err != nil {
			return err
		}
		d, closeAll, err := bench.DirectPortdrop(bench.PortdropObject, b.sb.NsB, iface)
		if err != nil {
			return err
		}
		ref = append(ref, d)
		b.logf("reference: %s", d)
		if err := closeAll(false); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		bench.SettleRCU()
	}
	sl, so, sr := bench.Summarize(l3), bench.Summarize(own), bench.Summarize(ref)
	b.rows = append(b.rows,
		row{"POST /l3af/configs/v1/add, 1 program (portdrop)", sl},
		row{"leaf apply of the same desired state", so},
		row{"reference: load+attach without leafd", sr},
	)
	b.cmds = append(b.cmds, fmt.Sprintf("median ratios: L3AF/reference %.2fx, leaf apply/reference %.2fx, L3AF/leaf apply %.2fx",
		float64(sl.Median)/float64(sr.Median), float64(so.Median)/float64(sr.Median), float64(sl.Median)/float64(so.Median)))
	return nil
}

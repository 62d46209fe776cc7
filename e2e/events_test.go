package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestEventsAndHealth walks the event log through the typed client, the
// raw API and the CLI (list and --follow), and the health endpoints.
func TestEventsAndHealth(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	hc := apiHTTP(d.Socket)
	for _, path := range []string{v1.PathHealth, v1.PathReady} {
		if a := apiRequest(t, hc, http.MethodGet, path, nil); a.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, a.Code, a.Body)
		}
	}
	if a := apiRequest(t, hc, http.MethodGet, v1.PathEvents+"?since=x", nil); a.Code != http.StatusBadRequest || !strings.Contains(string(a.Body), "since") {
		t.Fatalf("GET events?since=x: %d %s", a.Code, a.Body)
	}
	if a := apiRequest(t, hc, http.MethodGet, v1.PathEvents+"?follow=maybe", nil); a.Code != http.StatusBadRequest {
		t.Fatalf("GET events?follow=maybe: %d %s", a.Code, a.Body)
	}

	// Follow through the typed client from the start.
	got := make(chan v1.Event, 100)
	fctx, stop := context.WithCancel(context.Background())
	followDone := make(chan error, 1)
	go func() {
		followDone <- d.Client.FollowEvents(fctx, 0, func(e v1.Event) error { got <- e; return nil })
	}()
	// And through the CLI.
	cli := exec.Command(filepath.Join(testenv.Binaries(t), "leaf"), "--socket", d.Socket, "events", "--follow", "-o", "json")
	out, _ := cli.StdoutPipe()
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Process.Kill(); cli.Wait() })
	cliEvents := make(chan v1.Event, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e v1.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				cliEvents <- e
			}
		}
	}()

	apply(t, d, doc(portFilter(p, "pf", "1.0.0", 19)))
	if _, err := d.Client.Apply(ctx(t), doc("name: Bad\npackage: x@1"), false); err == nil {
		t.Fatal("a bad document applied")
	}
	os.Remove(filepath.Join(d.BPFFS, "attachments", "pf", "maps", "drops"))
	want := []string{v1.EventApply, v1.EventApplyFailed, v1.EventDrift, v1.EventRestored}
	for name, ch := range map[string]chan v1.Event{"client": got, "cli": cliEvents} {
		var seen []string
		var last uint64
		deadline := time.After(restoreBound)
		for len(seen) < len(want) {
			select {
			case e := <-ch:
				if e.Seq <= last {
					t.Fatalf("%s: sequence went from %d to %d", name, last, e.Seq)
				}
				last = e.Seq
				if len(seen) == 0 || seen[len(seen)-1] != e.Type {
					seen = append(seen, e.Type)
				}
			case <-deadline:
				t.Fatalf("%s followed %v, want %v", name, seen, want)
			}
		}
		if strings.Join(seen, " ") != strings.Join(want, " ") {
			t.Fatalf("%s followed %v, want %v", name, seen, want)
		}
	}
	stop()
	if err := <-followDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("FollowEvents ended with %v, want context.Canceled", err)
	}

	// The list: everything so far, or after a sequence number.
	all, err := d.Client.Events(ctx(t), 0)
	if err != nil || len(all) < 4 {
		t.Fatalf("events: %v %+v", err, all)
	}
	rest, _ := d.Client.Events(ctx(t), all[1].Seq)
	if len(rest) != len(all)-2 || rest[0].Seq != all[2].Seq {
		t.Fatalf("events since %d: %+v", all[1].Seq, rest)
	}
	table := mustCLI(t, d.Socket, "events")
	for _, w := range []string{"apply/create\tpf", "drift/map-pin-missing\tpf", "restored/map-pin-missing\tpf"} {
		if !strings.Contains(table, w) {
			t.Errorf("leaf events lacks %q:\n%s", w, table)
		}
	}
	var apiErr *client.APIError
	if _, err := client.New(filepath.Join(t.TempDir(), "none.sock")).Events(ctx(t), 0); err == nil || errors.As(err, &apiErr) {
		t.Fatalf("events without leafd: %v", err)
	}
}

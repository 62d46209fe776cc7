// Command leaf-flowexport is the flowexport package's companion: it reads
// the attachment's flow table and exports the flows as IPFIX (RFC 7011)
// over UDP to a collector, with active and idle timeouts.
//
//	leaf-flowexport --collector 192.0.2.10:4739 --active-timeout 60s --idle-timeout 15s
//
// leafd passes the maps (LEAF_MAP_FDS); by hand, --pins names leafd's pin
// directory of the attachment.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/leaf-ebpf/leaf/internal/flowexport"
	"github.com/leaf-ebpf/leaf/internal/mapfds"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "leaf-flowexport:", err)
		os.Exit(1)
	}
}

func run() error {
	collector := flag.String("collector", "", "IPFIX collector, host:port (UDP)")
	active := flag.Duration("active-timeout", 60*time.Second, "export a long-lived flow's counts at least this often")
	idle := flag.Duration("idle-timeout", 15*time.Second, "end a flow (last record, removed from the table) after this long without packets")
	interval := flag.Duration("interval", time.Second, "how often the flow table is read")
	domain := flag.Uint("domain", 1, "IPFIX observation domain ID")
	pins := flag.String("pins", "", "open the maps pinned in this directory instead of LEAF_MAP_FDS")
	flag.Parse()
	if *collector == "" {
		return fmt.Errorf("--collector is required")
	}
	if *interval <= 0 || *idle < *interval || *active < *interval || *domain > 1<<32-1 {
		return fmt.Errorf("want 0 < --interval <= --idle-timeout, --active-timeout and --domain < 2^32")
	}
	maps, err := mapfds.Open(*pins, "flows")
	if err != nil {
		return err
	}
	conn, err := net.Dial("udp", *collector)
	if err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	defer conn.Close()
	e := &flowexport.Exporter{Flows: maps["flows"], Conn: conn, Active: *active, Idle: *idle,
		Enc: flowexport.Encoder{Domain: uint32(*domain)}}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return e.Flush()
		case <-tick.C:
			// A failed send loses that poll's records, as a lost UDP
			// datagram would; the next poll goes on.
			if _, err := e.Poll(); err != nil {
				fmt.Fprintln(os.Stderr, "leaf-flowexport:", err)
			}
		}
	}
}

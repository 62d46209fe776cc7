package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

func tailCmd(g *globals) *cobra.Command {
	var max int
	var dur time.Duration
	var output string
	c := &cobra.Command{
		Use:   "tail ATTACHMENT MAP",
		Short: "Stream the records a program writes to a ring buffer or perf event array, decoded from its BTF type",
		Long: "The package declares the record type of the map (records: [{map, type, formats}]);\n" +
			"without it records print in hex. A ring buffer has one reader: records tail reads\n" +
			"are not seen by a companion reading the same map. Ends after --max records or --for.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			end, err := g.client().Tail(ctx, args[0], args[1], max, dur, func(ev v1.TailEvent) error {
				if output == "json" {
					return printJSONLine(g.out, ev)
				}
				fmt.Fprintln(g.out, recordLine(ev))
				return nil
			})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSONLine(g.out, v1.TailEvent{Time: time.Now().UTC(), End: end})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d records, %d lost\n", end.Records, end.Lost)
			return nil
		},
	}
	c.Flags().IntVar(&max, "max", 100, "stop after this many records (at most 100000)")
	c.Flags().DurationVar(&dur, "for", 10*time.Second, "stop after this long (at most 1h)")
	c.Flags().StringVarP(&output, "output", "o", "text", "text (one record a line, field=value) or json")
	return c
}

// recordLine shows a record as time and field=value pairs, sorted.
func recordLine(ev v1.TailEvent) string {
	var b strings.Builder
	b.WriteString(ev.Time.Format("15:04:05.000000"))
	if ev.Record == nil {
		fmt.Fprintf(&b, " raw=%s", ev.Raw)
	}
	keys := make([]string, 0, len(ev.Record))
	for k := range ev.Record {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := json.Marshal(ev.Record[k])
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	if ev.Lost > 0 {
		fmt.Fprintf(&b, " (%d lost before)", ev.Lost)
	}
	if ev.Error != "" {
		fmt.Fprintf(&b, " error=%q", ev.Error)
	}
	return b.String()
}

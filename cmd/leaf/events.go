package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

func eventsCmd(g *globals) *cobra.Command {
	var follow bool
	var since uint64
	var output string
	c := &cobra.Command{
		Use:   "events",
		Short: "Show leafd's event log: applies, drifts, restores, foreign programs, companions",
		Long: "Events carries sequence numbers that only grow; a gap means the bounded log dropped\n" +
			"events before they were read. --follow keeps printing new events until interrupted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			header := output == "table"
			print := func(e v1.Event) error {
				if output == "json" {
					return printJSONLine(g.out, e)
				}
				if header {
					// Times are local, with their UTC offset, so
					// events from hosts in other zones line up.
					fmt.Fprintln(g.out, "SEQ\tTIME\tTYPE/KIND\tATTACHMENT/HOOK\tMESSAGE")
					header = false
				}
				printEvent(g.out, e)
				return nil
			}
			if !follow {
				ctx, cancel := g.ctx()
				defer cancel()
				evs, err := g.client().Events(ctx, since)
				if err != nil {
					return err
				}
				for _, e := range evs {
					if err := print(e); err != nil {
						return err
					}
				}
				return nil
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err := g.client().FollowEvents(ctx, since, print)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	c.Flags().Uint64Var(&since, "since", 0, "only events with a sequence number above this")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json (one object a line)")
	return c
}

func printEvent(w io.Writer, e v1.Event) {
	subject := e.Attachment
	if subject == "" {
		subject = e.Hook
	}
	if subject == "" {
		subject = "-"
	}
	kind := e.Type
	if e.Kind != "" {
		kind += "/" + e.Kind
	}
	msg := strings.ReplaceAll(e.Message, "\n", " ")
	if e.LatencyMs != nil {
		msg += fmt.Sprintf(" (%.1f ms)", *e.LatencyMs)
	}
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format("2006-01-02T15:04:05.000Z07:00"), kind, subject, msg)
}

func printJSONLine(w io.Writer, v any) error {
	data, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

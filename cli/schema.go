package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
)

type schemaFailure struct {
	Position      string `json:"position"`
	EventID       string `json:"event_id"`
	StreamID      string `json:"stream_id"`
	Version       int64  `json:"version"`
	Type          string `json:"type"`
	SchemaVersion int    `json:"schema_version"`
	Error         string `json:"error"`
}

type schemaReport struct {
	Registry []string        `json:"registry_errors"`
	Checked  int             `json:"events_checked"`
	Failed   int             `json:"events_failed"`
	Failures []schemaFailure `json:"failures"`
}

func (s *session) schemaCmd() *cobra.Command {
	var maxFailures int
	var f eventstore.Filter
	check := &cobra.Command{
		Use:   "check",
		Short: "Check the registry and decode every stored event with it",
		Long: `Check the application's schema registry for inconsistencies (a schema
without a Go type, a version without upcasters to the current one, a Go type
that does not round-trip), then decode every stored event (of the given
categories and types) as the application would, validating each against its
version's schema: a dry run of an upgrade on real data. Nothing is written.

The registry lives in your program, so this command works only in a CLI
embedded in it (cli.Config.Registry); the standalone binary says so and exits
with 2. Exits with 3 when anything fails.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: s.run(func(ctx context.Context, _ []string) error {
			reg := s.cfg.Registry
			if reg == nil {
				return usageErr("schema check needs your schema registry: run it from a CLI embedded in your program (cli.New(&cli.Config{Registry: reg}))")
			}
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			rep := schemaReport{Registry: []string{}, Failures: []schemaFailure{}}
			if err := reg.Check(); err != nil {
				rep.Registry = splitJoined(err)
			}
			cr, err := reg.CheckEvents(ctx, store.ReadLog(ctx, eventstore.Position{}, f), maxFailures)
			if err != nil {
				return err
			}
			rep.Checked, rep.Failed = cr.Checked, cr.Failed
			for _, fl := range cr.Failures {
				e := fl.Event
				rep.Failures = append(rep.Failures, schemaFailure{Position: e.Position.String(), EventID: e.ID.String(),
					StreamID: e.StreamID, Version: e.Version, Type: e.Type, SchemaVersion: e.SchemaVersion, Error: fl.Err.Error()})
			}
			if s.json {
				err = writeJSON(s.out, rep)
			} else {
				err = s.printSchemaReport(rep)
			}
			if err != nil {
				return err
			}
			if len(rep.Registry) > 0 || rep.Failed > 0 {
				return &Error{Code: ExitProblems, Err: fmt.Errorf("schema check failed: %d registry errors, %d of %d events do not decode",
					len(rep.Registry), rep.Failed, rep.Checked)}
			}
			return nil
		}),
	}
	check.Flags().IntVar(&maxFailures, "max-failures", 20, "list at most this many failing events (all are counted)")
	check.Flags().StringSliceVarP(&f.Categories, "category", "c", nil, "only streams of this category; repeatable")
	check.Flags().StringSliceVarP(&f.Types, "type", "t", nil, "only events of this type; repeatable")
	return group("schema", "Check event schemas against stored events", check)
}

// splitJoined lists the errors of an errors.Join.
func splitJoined(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func (s *session) printSchemaReport(rep schemaReport) error {
	if len(rep.Registry) == 0 {
		fmt.Fprintln(s.out, "Registry: consistent.")
	} else {
		fmt.Fprintf(s.out, "Registry: %s\n", plural(int64(len(rep.Registry)), "error", "errors"))
		for _, e := range rep.Registry {
			fmt.Fprintf(s.out, "  %s\n", strings.ReplaceAll(displayText(s.red.text(e)), "\n", "\n    "))
		}
	}
	fmt.Fprintf(s.out, "Events: %d checked, %d do not decode\n", rep.Checked, rep.Failed)
	for _, fl := range rep.Failures {
		fmt.Fprintf(s.out, "  %s  %s@%d  %s v%d: %s\n", fl.Position, display(fl.StreamID), fl.Version, display(fl.Type), fl.SchemaVersion,
			strings.ReplaceAll(displayText(s.red.text(fl.Error)), "\n", "\n    "))
	}
	if n := rep.Failed - len(rep.Failures); n > 0 {
		fmt.Fprintf(s.out, "  … and %d more (raise --max-failures)\n", n)
	}
	return nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
)

func (s *session) eventsCmd() *cobra.Command {
	var (
		f      eventstore.Filter
		lines  int
		follow bool
		poll   time.Duration
	)
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Print the last events of the log, and with --follow the ones that come",
		Long: `Print the last --lines events of the global log (of the given categories
and types), oldest first, one per line: recorded time, position, stream@version,
type (with /vN after the first schema version) and payload. With --follow,
keep printing events as they commit, in log order, until interrupted.

It reads the log as a gap-safe reader does (an event appears once every
earlier transaction has ended) and leaves no checkpoint behind. With --json,
prints one JSON object per line.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: s.run(func(ctx context.Context, _ []string) error {
			if lines < 0 {
				return usageErr("--lines must not be negative")
			}
			if poll <= 0 {
				return usageErr("--poll must be positive")
			}
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			return s.tail(ctx, store, f, lines, follow, poll)
		}),
	}
	tail.Flags().StringSliceVarP(&f.Categories, "category", "c", nil, "only streams of this category (the stream ID before its first '-'); repeatable")
	tail.Flags().StringSliceVarP(&f.Types, "type", "t", nil, "only events of this type; repeatable")
	tail.Flags().IntVarP(&lines, "lines", "n", 10, "how many past events to print first")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	tail.Flags().DurationVar(&poll, "poll", 250*time.Millisecond, "with --follow, how often to look for new events")
	return group("events", "Read the global log", tail)
}

func (s *session) tail(ctx context.Context, store *eventstore.Store, f eventstore.Filter, lines int, follow bool, poll time.Duration) error {
	// ReadLast's Next is the end of the readable log (selected by f or
	// not), read in the same snapshot as the events: following on from
	// it misses nothing and repeats nothing.
	page, err := store.ReadLast(ctx, max(lines, 1), f)
	if err != nil {
		return err
	}
	if lines == 0 {
		page.Events = nil
	}
	enc := newJSONEncoder(s.out, "")
	print := func(e eventstore.Event) error {
		if s.json {
			return enc.Encode(toJSONEvent(e))
		}
		_, err := fmt.Fprintln(s.out, eventLine(e))
		return err
	}
	for _, e := range page.Events {
		if err := print(e); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	// Follow by reading the whole log and filtering here: the position
	// read then moves past every event, selected or not, so each poll
	// costs only what was appended since the last (a filtered read would
	// rescan the unselected events after the last selected one each time).
	after := page.Next
	for {
		next, err := store.ReadAll(ctx, after, 500)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the normal end of --follow
			}
			return err
		}
		for _, e := range next.Events {
			if selects(f, e) {
				if err := print(e); err != nil {
					return err
				}
			}
		}
		after = next.Next
		if len(next.Events) == 500 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// selects reports whether f keeps e (categories and types; the CLI does
// not filter by partition).
func selects(f eventstore.Filter, e eventstore.Event) bool {
	return (len(f.Categories) == 0 || slices.Contains(f.Categories, e.Category())) &&
		(len(f.Types) == 0 || slices.Contains(f.Types, e.Type))
}

func (s *session) streamCmd() *cobra.Command {
	var from int64
	show := &cobra.Command{
		Use:   "show STREAM_ID",
		Short: "Print a stream's events in version order",
		Long: `Print a stream's events in version order, each with its version, type,
position, recording time, who appended it (the application's principal and
the database role), correlation and causation IDs, metadata and payload.
Exits with 4 when the stream has no events.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: s.run(func(ctx context.Context, args []string) error {
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			var events []eventstore.Event
			for e, err := range store.ReadStream(ctx, args[0], from) {
				if errors.Is(err, eventstore.ErrStreamNotFound) {
					return notFound("stream %q has no events", args[0])
				}
				if err != nil {
					return err
				}
				events = append(events, e)
			}
			who, err := audits(ctx, store, events)
			if err != nil {
				return err
			}
			if s.json {
				out := struct {
					StreamID string      `json:"stream_id"`
					Events   []jsonEvent `json:"events"`
				}{StreamID: args[0], Events: []jsonEvent{}}
				for _, e := range events {
					je := toJSONEvent(e)
					je.Principal, je.DBRole = who[e.ID].Principal, who[e.ID].Role
					out.Events = append(out.Events, je)
				}
				return writeJSON(s.out, out)
			}
			fmt.Fprintf(s.out, "Stream %s: %s\n", display(args[0]), plural(int64(len(events)), "event", "events"))
			for _, e := range events {
				fmt.Fprintf(s.out, "\nv%d  %s  %s  at %s  id %s\n", e.Version, typeName(e), e.Position, formatTime(e.RecordedAt), e.ID)
				if w := auditLine(who[e.ID]); w != "" {
					fmt.Fprintf(s.out, "  by          %s\n", w)
				}
				if c := e.Metadata.CorrelationID; c != "" {
					fmt.Fprintf(s.out, "  correlation %s\n", display(c))
				}
				if c := e.Metadata.CausationID; c != "" {
					fmt.Fprintf(s.out, "  causation   %s\n", display(c))
				}
				for _, k := range sortedKeys(e.Metadata.Values) {
					fmt.Fprintf(s.out, "  %s: %s\n", display(k), display(e.Metadata.Values[k]))
				}
				fmt.Fprintf(s.out, "  %s\n", compactData(e.Data))
			}
			return nil
		}),
	}
	show.Flags().Int64Var(&from, "from", 0, "start at this version")
	return group("stream", "Read one stream; tombstone, archive, restore or truncate it", append([]*cobra.Command{show}, s.retireCmds()...)...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

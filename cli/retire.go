package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
)

// retireCmds are the stream subcommands that retire streams: operations
// of the schema's owner (run them with the owner's connection string).
func (s *session) retireCmds() []*cobra.Command {
	op := func(use, short, long string, fn func(ctx context.Context, store *eventstore.Store, args []string) error, args cobra.PositionalArgs) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Long: long, Args: usageArgs(args),
			RunE: s.run(func(ctx context.Context, a []string) error {
				store, err := s.connect(ctx, false)
				if err != nil {
					return err
				}
				if err := fn(ctx, store, a); err != nil {
					if errors.Is(err, eventstore.ErrStreamNotFound) {
						return notFound("stream %q does not exist", a[0])
					}
					return err
				}
				return s.printRetirement(ctx, store, a[0])
			}),
		}
	}
	return []*cobra.Command{
		op("tombstone STREAM_ID", "Refuse every later append to a stream, for ever",
			`Tombstone a stream: every later append is refused (eventstore.ErrRetired);
its events stay readable. There is no undo. Needs the schema owner's role.`,
			func(ctx context.Context, st *eventstore.Store, a []string) error { return st.Tombstone(ctx, a[0]) }, cobra.ExactArgs(1)),
		op("archive STREAM_ID", "Move a stream's events out of the log (restorable)",
			`Archive a stream: its events move to the archived_events table, out of the
log's reads, every subscription and the hot events table; appends are refused
until "stream restore". Needs the schema owner's role.`,
			func(ctx context.Context, st *eventstore.Store, a []string) error { return st.Archive(ctx, a[0]) }, cobra.ExactArgs(1)),
		op("restore STREAM_ID", "Bring an archived stream's events back into the log",
			`Restore an archived stream: its events return to the log at their old
positions and it takes appends again. Subscriptions that passed those
positions meanwhile do not handle them again (reset one to replay them).
Needs the schema owner's role.`,
			func(ctx context.Context, st *eventstore.Store, a []string) error { return st.Restore(ctx, a[0]) }, cobra.ExactArgs(1)),
		op("truncate STREAM_ID VERSION", "Delete a stream's events before a version (after a snapshot)",
			`Delete a stream's events before VERSION, for good. The stream's snapshot must
be at VERSION-1 or later, and its last event stays. Needs the schema owner's
role.`,
			func(ctx context.Context, st *eventstore.Store, a []string) error {
				v, err := strconv.ParseInt(a[1], 10, 64)
				if err != nil {
					return badCommandLine(fmt.Errorf("version %q: %w", a[1], err))
				}
				return st.TruncateStream(ctx, a[0], v)
			}, cobra.ExactArgs(2)),
		op("retirement STREAM_ID", "Show whether a stream is tombstoned, archived or truncated", `Show a stream's retirement.`,
			func(context.Context, *eventstore.Store, []string) error { return nil }, cobra.ExactArgs(1)),
	}
}

// printRetirement prints a stream's retirement state.
func (s *session) printRetirement(ctx context.Context, store *eventstore.Store, stream string) error {
	r, err := store.StreamRetirement(ctx, stream)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return notFound("stream %q does not exist", stream)
	}
	if err != nil {
		return err
	}
	if s.json {
		out := map[string]any{"stream_id": r.StreamID, "version": r.Version, "truncated_before": r.TruncatedBefore,
			"tombstoned_at": nil, "archived_at": nil}
		if !r.TombstonedAt.IsZero() {
			out["tombstoned_at"] = r.TombstonedAt.UTC()
		}
		if !r.ArchivedAt.IsZero() {
			out["archived_at"] = r.ArchivedAt.UTC()
		}
		return writeJSON(s.out, out)
	}
	state := "live"
	switch {
	case !r.ArchivedAt.IsZero() && !r.TombstonedAt.IsZero():
		state = "tombstoned and archived"
	case !r.ArchivedAt.IsZero():
		state = "archived " + formatTime(r.ArchivedAt)
	case !r.TombstonedAt.IsZero():
		state = "tombstoned " + formatTime(r.TombstonedAt)
	}
	fmt.Fprintf(s.out, "Stream %s: version %d, %s", display(r.StreamID), r.Version, state)
	if r.TruncatedBefore > 0 {
		fmt.Fprintf(s.out, ", truncated before version %d", r.TruncatedBefore)
	}
	fmt.Fprintln(s.out)
	return nil
}

// retiredReport is status's line on retired streams.
type retiredReport struct {
	Tombstoned     int64 `json:"tombstoned"`
	Archived       int64 `json:"archived"`
	ArchivedEvents int64 `json:"archived_events"`
	Truncated      int64 `json:"truncated"`
}

// retired reads status's retired streams.
func retired(ctx context.Context, store *eventstore.Store) (*retiredReport, error) {
	r, err := store.Retirement(ctx)
	if err != nil {
		return nil, err
	}
	return &retiredReport{Tombstoned: r.Tombstoned, Archived: r.Archived, ArchivedEvents: r.ArchivedEvents, Truncated: r.Truncated}, nil
}

// printRetired prints status's line on retired streams (nothing when none).
func (s *session) printRetired(r *retiredReport) {
	if r == nil || *r == (retiredReport{}) {
		return
	}
	fmt.Fprintf(s.out, "Retired streams: %d tombstoned, %d archived (%s), %d truncated\n\n",
		r.Tombstoned, r.Archived, plural(r.ArchivedEvents, "event", "events"), r.Truncated)
}

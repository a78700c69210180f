package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
)

func (s *session) projectionCmd() *cobra.Command {
	rebuild := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Wipe a projection's read model and replay the log into it, with progress",
		Long: `Wipe the projection's read model and replay the whole log into it, showing
a progress bar with the rate and the time left on stderr, until it has caught
up with the log as it was when the rebuild began. A rebuild that is
interrupted resumes where it stopped when run again.

The projection's code lives in your program, so this command works only in a
CLI embedded in it (cli.Config.Projections); the standalone binary says so and
exits with 2.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: s.run(func(ctx context.Context, args []string) error {
			if s.cfg.Projections == nil {
				return usageErr("projection rebuild needs the projections' code: run it from a CLI embedded in your program " +
					"(cli.New(&cli.Config{Projections: runner})); the standalone binary can only move checkpoints (projection reset)")
			}
			return s.rebuild(ctx, args[0])
		}),
	}

	var to string
	reset := &cobra.Command{
		Use:   "reset NAME --to POSITION",
		Short: "Move a projection's (or any subscription's) checkpoint",
		Long: `Move every partition of the projection's checkpoint to POSITION ("TXID/SEQ"
as status prints it; "0" is the start of the log) and drop its dead letters
after it. Processes running it continue from there at their next batch.

In a CLI embedded in your program, a reset to 0 also clears the read model
(the projection's Reset), in the same transaction. The standalone binary
moves the checkpoint alone — of a projection ("NAME" or "projection:NAME") or
of any subscription (a relay, a consumer group) — and the read model is left
as it is. Exits with 4 for an unknown name.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: s.run(func(ctx context.Context, args []string) error {
			if to == "" {
				return usageErr("projection reset needs --to POSITION (\"0\" for the start of the log)")
			}
			pos, err := eventstore.ParsePosition(to)
			if err != nil {
				return &Error{Code: ExitUsage, Err: err}
			}
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			name, cleared := args[0], false
			done := false
			if s.cfg.Projections != nil {
				err := s.cfg.Projections.Reset(ctx, name, pos)
				switch {
				case err == nil:
					done, cleared = true, pos.IsZero()
				case !errors.Is(err, projection.ErrUnknownProjection):
					return err
				}
			}
			if !done {
				if name, err = s.subscriptionName(ctx, name); err != nil {
					return err
				}
				if err := store.ResetSubscription(ctx, name, pos, nil); err != nil {
					return err
				}
			}
			if s.json {
				return writeJSON(s.out, map[string]any{"name": name, "position": pos.String(), "read_model_cleared": cleared})
			}
			fmt.Fprintf(s.out, "%s reset to %s\n", display(name), pos)
			if !cleared {
				fmt.Fprintln(s.out, "The read model was left as it is: its handler will see the events after that position again.")
			}
			return nil
		}),
	}
	reset.Flags().StringVar(&to, "to", "", `position to move to, "TXID/SEQ" ("0": the start of the log)`)
	return group("projection", "Rebuild projections and move their checkpoints", rebuild, reset)
}

func (s *session) rebuild(ctx context.Context, name string) error {
	if _, err := s.connect(ctx, false); err != nil {
		return err
	}
	started := time.Now()
	var bar *progressbar.ProgressBar
	var done int64
	resumed := false
	err := s.cfg.Projections.Rebuild(ctx, name, func(p projection.Progress) {
		done = p.Done
		if p.Resumed && !resumed {
			resumed = true
			fmt.Fprintf(s.errw, "resuming the rebuild of %s that an earlier run began\n", display(name))
		}
		if s.json {
			return
		}
		if bar == nil {
			bar = progressbar.NewOptions64(max(p.Total, 1),
				progressbar.OptionSetWriter(s.errw),
				progressbar.OptionSetDescription("rebuild "+display(name)),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("events"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetElapsedTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetWidth(30),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(s.errw) }),
			)
		}
		if p.Total > bar.GetMax64() {
			bar.ChangeMax64(p.Total)
		}
		_ = bar.Set64(p.Done)
	})
	if bar != nil {
		if err == nil {
			_ = bar.Finish()
		} else {
			fmt.Fprintln(s.errw)
		}
	}
	if errors.Is(err, projection.ErrUnknownProjection) {
		return notFound("%v", err)
	}
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", name, err)
	}
	elapsed := time.Since(started)
	rate := float64(done) / max(elapsed.Seconds(), 1e-9)
	if s.json {
		return writeJSON(s.out, map[string]any{"name": name, "events": done, "seconds": elapsed.Seconds(), "events_per_second": rate})
	}
	_, err = fmt.Fprintf(s.out, "rebuilt %s: %s in %s (%.0f events/s)\n", display(name), plural(done, "event", "events"), formatAge(elapsed), rate)
	return err
}

package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/storeview"
)

// Progress reports how far a Rebuild has come.
type Progress struct {
	// Projection is the projection being rebuilt.
	Projection string
	// Done is how many events have been replayed since the rebuild began.
	Done int64
	// Total is how many events the rebuild had to replay when it began
	// (grown to Done if more arrived meanwhile). Each partition's count is
	// capped at 1,000,000 at the start; the cap is then lifted as Done grows.
	Total int64
	// Rate is the events handled per second by this call.
	Rate float64
	// Elapsed is the time since this call began.
	Elapsed time.Duration
	// Resumed says the call continued a rebuild that an earlier call began.
	Resumed bool
	// Finished is set on the last report of a successful rebuild.
	Finished bool
}

// Rebuild wipes a projection's read model and replays the log into it,
// reporting progress to progress (which may be nil) about every 200ms from
// the calling goroutine. It returns when the projection has read every
// event committed before the rebuild began (waiting, if need be, for an
// older open transaction to end, as every gap-safe reader does).
//
// The wipe (the projection's Reset) and the move of its checkpoints to the
// start of the log commit in one transaction, together with a record of
// the rebuild; from then on a rebuild is an ordinary catch-up: memory stays
// flat (one batch at a time), and a rebuild that is killed resumes where its
// last batch committed — the next Rebuild call finds the record and
// continues instead of starting over, and a Runner running the projection
// continues it anyway.
//
// Rebuild handles the partitions it can lease; processes already running
// the projection keep theirs and rebuild them (Rebuild waits for them).
// Meanwhile the read model is incomplete. For a rebuild without downtime,
// raise the projection's Version instead (see the package documentation).
func (r *Runner) Rebuild(ctx context.Context, name string, progress func(Progress)) error {
	e, err := r.entry(name)
	if err != nil {
		return err
	}
	started := time.Now()
	handledBefore := e.handled.Load()
	plan, err := r.planRebuild(ctx, e)
	if err != nil {
		return fmt.Errorf("projection %q: rebuild: %w", name, err)
	}
	report := func(finished bool) {
		if progress == nil {
			return
		}
		el := time.Since(started)
		n := e.handled.Load() - handledBefore
		done := plan.doneBefore + n
		if finished {
			done = max(done, plan.total)
		}
		p := Progress{Projection: name, Done: done, Total: max(plan.total, done), Elapsed: el, Resumed: plan.resumed, Finished: finished}
		if s := el.Seconds(); s > 0 {
			p.Rate = float64(n) / s
		}
		progress(p)
	}
	report(false)

	owner := r.cfg.Owner
	if owner != "" {
		owner += "/rebuild"
	}
	finished := make(chan error, 1)
	if plan.target.IsZero() {
		finished <- nil // the log was empty: nothing to replay
	} else {
		go func() { finished <- r.keepRunning(ctx, e, owner, plan.target) }()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-finished:
			if ctx.Err() != nil {
				return fmt.Errorf("projection %q: rebuild interrupted (it resumes on the next Rebuild or Run): %w", name, ctx.Err())
			}
			if err != nil {
				return fmt.Errorf("projection %q: rebuild: %w", name, err)
			}
			if err := r.endRebuild(ctx, e); err != nil {
				return fmt.Errorf("projection %q: rebuild: %w", name, err)
			}
			report(true)
			return nil
		case <-tick.C:
			report(false)
		}
	}
}

// rebuildPlan is where a rebuild stops and how much it has to do.
type rebuildPlan struct {
	target     eventstore.Position // the log's head when the rebuild began
	total      int64               // the events to replay, counted when it began
	doneBefore int64               // of those, replayed before this call
	resumed    bool                // an earlier call began the rebuild
}

// planRebuild finds the rebuild an earlier call began, or begins one: the
// wipe of the read model, the move of the checkpoints to the start of the
// log and the record of the target commit in one transaction. The count
// of what is left is taken before the replay starts, so that none of its
// batches precedes the count.
func (r *Runner) planRebuild(ctx context.Context, e *entry) (rebuildPlan, error) {
	sub, err := r.subscription(e, "", eventstore.Position{})
	if err != nil {
		return rebuildPlan{}, err
	}
	if err := sub.Register(ctx); err != nil {
		return rebuildPlan{}, err
	}
	pool := r.store.Pool()
	var plan rebuildPlan
	var targetTx int64
	var since time.Time
	err = pool.QueryRow(ctx, r.sql.getRebuild, e.sub).Scan(&targetTx, &plan.target.Seq, &plan.total, &since)
	switch {
	case err == nil:
		plan.resumed = true
		plan.target.TxID = uint64(targetTx)
	case !errors.Is(err, pgx.ErrNoRows):
		return rebuildPlan{}, err
	default:
		// The last committed event, readable or not yet: a rebuild that
		// stopped at the readable end would leave out events committed
		// before it began whenever an open transaction holds readers back.
		head, err := r.store.Head(ctx)
		if err != nil {
			return rebuildPlan{}, err
		}
		plan.target = head.Position
		err = r.store.ResetSubscription(ctx, e.sub, eventstore.Position{}, func(ctx context.Context, tx pgx.Tx) error {
			if err := r.reset(ctx, e, tx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, r.sql.insertRebuild, e.sub, int64(plan.target.TxID), plan.target.Seq)
			return err
		})
		if err != nil {
			return rebuildPlan{}, err
		}
		// For a projection of the whole log in one partition, the head's
		// count is the work to do, and the lag count below (a scan of the
		// log, as long as the replay's first batches) is skipped.
		if len(e.p.Types) == 0 && len(e.p.Categories) == 0 && e.p.Partitions <= 1 && !head.Estimated {
			plan.total = head.Events
			_, err := pool.Exec(ctx, r.sql.setRebuildTotal, e.sub, plan.total)
			return plan, err
		}
	}
	parts, err := r.store.SubscriptionStatuses(ctx, e.sub)
	if err != nil {
		return rebuildPlan{}, err
	}
	left := sumLag(parts)
	if plan.resumed {
		plan.doneBefore = max(0, plan.total-left)
		return plan, nil
	}
	plan.total = left
	_, err = pool.Exec(ctx, r.sql.setRebuildTotal, e.sub, plan.total)
	return plan, err
}

// endRebuild clears the record of a finished rebuild, retrying with
// backoff while the database is unreachable (the replay is done: giving up
// here would leave the projection shown as rebuilding).
func (r *Runner) endRebuild(ctx context.Context, e *entry) error {
	wait := retry.Backoff(r.cfg.RetryBackoff, r.cfg.MaxRetryBackoff)
	for {
		_, err := r.store.Pool().Exec(ctx, r.sql.deleteRebuild, e.sub)
		if err == nil {
			return nil
		}
		d := wait.NextBackOff()
		r.log.Warn("strata: rebuild caught up but could not clear its record; retrying", "projection", e.p.Name, "err", err, "retry_in", d)
		if !retry.Sleep(ctx, d) {
			return fmt.Errorf("caught up, but its record was not cleared (the next Rebuild or Run finishes it): %w", ctx.Err())
		}
	}
}

func sumLag(parts []eventstore.SubscriptionStatus) int64 {
	var n int64
	for _, p := range parts {
		n += p.Lag
	}
	return n
}

// Reset moves a projection's checkpoints to the position to, in one
// transaction, dropping its dead letters after that position; processes
// running it continue from there at their next batch. With the zero
// Position (replay everything) the projection's Reset clears the read
// model in the same transaction, and a rebuild in progress is forgotten.
// With a later position the read model is left as it is: use that to skip
// events (forward) or to replay into an idempotent read model (back).
func (r *Runner) Reset(ctx context.Context, name string, to eventstore.Position) error {
	e, err := r.entry(name)
	if err != nil {
		return err
	}
	sub, err := r.subscription(e, "", eventstore.Position{})
	if err != nil {
		return err
	}
	if err := sub.Register(ctx); err != nil {
		return fmt.Errorf("projection %q: reset: %w", name, err)
	}
	err = r.store.ResetSubscription(ctx, e.sub, to, func(ctx context.Context, tx pgx.Tx) error {
		if !to.IsZero() {
			return nil
		}
		if err := r.reset(ctx, e, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, r.sql.deleteRebuild, e.sub)
		return err
	})
	if err != nil {
		return fmt.Errorf("projection %q: %w", name, err)
	}
	return nil
}

// reset runs the projection's ResetFunc, if any, in tx; a panic in it is
// an error (an *eventstore.PanicError, logged with its stack).
func (r *Runner) reset(ctx context.Context, e *entry, tx pgx.Tx) (err error) {
	if e.p.Reset == nil {
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("reset: %w", storeview.Recovered(r.log.With("projection", e.p.Name), "ResetFunc", v))
		}
	}()
	if err := e.p.Reset(withVersion(ctx, e), tx); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

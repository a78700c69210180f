package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/retry"
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
	// Rate is the events replayed per second by this call, or by a Runner
	// of the same projection in this process that holds its partitions.
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
	var handled atomic.Int64
	poll := make(chan struct{}, 1)
	batchSize := r.cfg.BatchSize
	if e.p.BatchSize > 0 {
		batchSize = e.p.BatchSize
	}
	var target eventstore.Position // set before the subscription runs
	// reached[p] says this call's batches took partition p past target:
	// when they took every partition there, the rebuild is done without
	// asking the database.
	var mu sync.Mutex
	reached := make([]bool, e.p.Partitions)
	// onBatch sees this call's own batches; counted (below) sees every
	// batch this process commits for the projection, a Runner's too.
	onBatch := func(b eventstore.BatchInfo) {
		atTarget := !b.Last.Less(target)
		if atTarget && b.Partition >= 0 && b.Partition < len(reached) {
			mu.Lock()
			reached[b.Partition] = true
			mu.Unlock()
		}
		if b.Events+b.Parked < batchSize || atTarget {
			// A short batch, or one that reached the target: this
			// partition may have caught up.
			select {
			case poll <- struct{}{}:
			default:
			}
		}
	}
	allReached := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !slices.Contains(reached, false)
	}
	owner := r.cfg.Owner
	if owner != "" {
		owner += "/rebuild"
	}
	sub, err := r.subscription(e, owner, onBatch)
	if err != nil {
		return err
	}
	if err := sub.Register(ctx); err != nil {
		return fmt.Errorf("projection %q: rebuild: %w", name, err)
	}
	pool := r.store.Pool()
	var total, targetTx int64
	var since time.Time
	resumed := true
	// For a projection of the whole log in one partition, the head's count
	// of events is the work to do, and the lag count below (a scan of the
	// log, as long as the replay's first batches) is skipped.
	whole := len(e.p.Types) == 0 && len(e.p.Categories) == 0 && e.p.Partitions <= 1
	headEvents := int64(-1)
	err = pool.QueryRow(ctx, r.sql.getRebuild, e.sub).Scan(&targetTx, &target.Seq, &total, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		resumed = false
		// The last committed event, readable or not yet: a rebuild that
		// stopped at the readable end would leave out events committed
		// before it began whenever an open transaction holds readers back.
		head, err := r.store.Head(ctx)
		if err != nil {
			return fmt.Errorf("projection %q: rebuild: %w", name, err)
		}
		target = head.Position
		if whole && !head.Estimated {
			headEvents = head.Events
		}
		err = r.store.ResetSubscription(ctx, e.sub, eventstore.Position{}, func(ctx context.Context, tx pgx.Tx) error {
			if err := r.reset(ctx, e, tx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, r.sql.insertRebuild, e.sub, int64(target.TxID), target.Seq)
			return err
		})
		if err != nil {
			return fmt.Errorf("projection %q: rebuild: %w", name, err)
		}
	} else if err != nil {
		return fmt.Errorf("projection %q: rebuild: %w", name, err)
	} else {
		target.TxID = uint64(targetTx)
	}
	// From the reset's commit on, every batch this process commits for
	// the projection is part of the replay, whichever subscription (this
	// call's, or a Runner's that holds the partition's lease) commits it:
	// count it, and look at once whether the rebuild is done (the check
	// reads the checkpoints, so a batch of before the reset, reported
	// late, cannot end the rebuild early).
	counted := func(b eventstore.BatchInfo) {
		handled.Add(int64(b.Events))
		if b.Events+b.Parked < batchSize || !b.Last.Less(target) {
			select {
			case poll <- struct{}{}:
			default:
			}
		}
	}
	defer e.watch(counted)()
	if target.IsZero() {
		// The log was empty: every partition is past it already.
		for i := range reached {
			reached[i] = true
		}
		poll <- struct{}{}
	}

	// What is left to do, from the partitions' lag, counted before the
	// subscription starts so that none of its batches precedes the count.
	// (Counting beside the subscription's start-up, with its first commit
	// held back until the count, measured no faster on two cores.)
	left := headEvents
	if left < 0 {
		parts, err := r.store.SubscriptionStatuses(ctx, e.sub)
		if err != nil {
			return fmt.Errorf("projection %q: rebuild: %w", name, err)
		}
		left = sumLag(parts)
	}
	var doneBefore int64
	if resumed {
		doneBefore = max(0, total-left)
	} else {
		total = left
		if _, err := pool.Exec(ctx, r.sql.setRebuildTotal, e.sub, total); err != nil {
			return fmt.Errorf("projection %q: rebuild: %w", name, err)
		}
	}
	report := func(finished bool) {
		if progress == nil {
			return
		}
		el := time.Since(started)
		n := handled.Load()
		done := max(doneBefore+n, total-left)
		if finished {
			done = max(done, total)
		}
		p := Progress{Projection: name, Done: done, Total: max(total, done), Elapsed: el, Resumed: resumed, Finished: finished}
		if s := el.Seconds(); s > 0 {
			p.Rate = float64(n) / s
		}
		progress(p)
	}
	report(false)

	rctx, cancel := context.WithCancel(withVersion(ctx, e))
	defer cancel()
	h := r.handler(e)
	runErr := make(chan error, 1)
	running := true
	go func() { runErr <- sub.Run(rctx, h) }()
	stop := func() {
		cancel()
		if running {
			<-runErr
		}
	}

	statusTick := time.NewTicker(time.Second)
	defer statusTick.Stop()
	progressTick := time.NewTicker(200 * time.Millisecond)
	defer progressTick.Stop()
	wait := retry.Backoff(r.cfg.RetryBackoff, r.cfg.MaxRetryBackoff)
	for {
		select {
		case <-ctx.Done():
			stop()
			return fmt.Errorf("projection %q: rebuild interrupted (it resumes on the next Rebuild or Run): %w", name, ctx.Err())
		case err := <-runErr:
			running = false
			var he *eventstore.HandlerError
			if errors.As(err, &he) || errors.Is(err, eventstore.ErrPartitionsChanged) {
				return fmt.Errorf("projection %q: rebuild: %w", name, err)
			}
			d := wait.NextBackOff()
			r.log.Warn("strata: rebuild's subscription failed; restarting", "projection", name, "err", err, "retry_in", d)
			if !retry.Sleep(ctx, d) {
				continue // reported by the ctx.Done case
			}
			running = true
			go func() { runErr <- sub.Run(rctx, h) }()
			continue
		case <-progressTick.C:
			report(false)
			continue
		case <-statusTick.C:
		case <-poll:
		}
		if !allReached() {
			parts, err := r.store.SubscriptionStatuses(ctx, e.sub)
			if err != nil {
				// The database may be restarting; try at the next tick.
				if ctx.Err() == nil {
					r.log.Warn("strata: rebuild could not read its progress", "projection", name, "err", err)
				}
				continue
			}
			left = sumLag(parts)
			if !caughtUp(parts, target) {
				continue
			}
		}
		if _, err := pool.Exec(ctx, r.sql.deleteRebuild, e.sub); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("strata: rebuild caught up but could not clear its record; retrying", "projection", name, "err", err)
			}
			continue
		}
		stop()
		report(true)
		return nil
	}
}

// caughtUp reports whether every partition has read past target or has
// nothing left to read.
func caughtUp(parts []eventstore.SubscriptionStatus, target eventstore.Position) bool {
	if len(parts) == 0 {
		return false
	}
	for _, p := range parts {
		if p.Lag > 0 && p.Checkpoint.Less(target) {
			return false
		}
	}
	return true
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
	sub, err := r.subscription(e, "", nil)
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
			err = fmt.Errorf("reset: %w", eventstore.Recovered(r.log.With("projection", e.p.Name), "ResetFunc", v))
		}
	}()
	if err := e.p.Reset(withVersion(ctx, e), tx); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

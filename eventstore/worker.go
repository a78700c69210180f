package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/retry"
)

// worker is one partition's reading loop: it reads pages of the
// partition's events from the log, hands them to the handler and moves the
// partition's checkpoint, fenced on its lease (see advance).
//
// Its state invariant, true between any two steps of run (checked after
// each by assertInvariant when checkInvariants is on, as in this package's
// tests):
//
//   - cp ≤ readAt: reads start at the stored checkpoint or past it (past it
//     over events a filtered read passed over, and over batches whose
//     checkpoint is deferred).
//   - pending ≥ 0, and pending > 0 only with cp < readAt: the events
//     handled but not yet stored lie between the two.
//   - pending > 0 only with pendingT set (when the first of them was read).
//   - stored is set: when cp was last stored (or read at the start).
//   - resets ≥ 0, and every parked stream's dead letter ID is positive.
//
// Every step that stores a checkpoint sets cp (and readAt, pending, stored)
// together, only after the database accepted it; a fenced update changes
// nothing, and the worker ends (the coordinator restarts it from the row).
type worker struct {
	sub      *Subscription
	p        int
	filter   Filter
	metrics  partitionMetrics
	cp       Position         // the stored checkpoint: the fence of the next batch
	resets   int64            // the partition's resets as of cp: part of the fence
	readAt   Position         // where the next read starts
	pending  int              // events handled past cp whose checkpoint is not stored yet
	pendingT time.Time        // when the first of them was read
	pendingR time.Time        // when the last of them was recorded
	stored   time.Time        // when cp was last stored
	parked   map[string]int64 // stream → id of its first dead letter
	lastSync time.Time        // when sync last ran
	ahead    chan prefetched  // the next page, read while a batch is handled
	stop     stopState        // progress toward SubscriptionConfig.StopAt (stopat.go)
}

// checkInvariants makes every worker step check the state invariant and
// panic when it is broken. Off in production; this package's tests turn it
// on.
var checkInvariants = false

func newWorker(sub *Subscription, p int, cp checkpoint) *worker {
	return &worker{sub: sub, p: p, cp: cp.Position, resets: cp.resets, readAt: cp.Position, stored: time.Now(),
		filter:  Filter{Categories: sub.cfg.Categories, Types: sub.cfg.Types, Partitions: sub.cfg.Partitions, Partition: p},
		metrics: sub.tel.partition(sub.cfg.Name, p), stop: stopState{at: sub.cfg.StopAt}}
}

// checkInvariant returns an error describing how the worker's state breaks
// its invariant (see worker), or nil.
func (w *worker) checkInvariant() error {
	var broken []string
	if w.readAt.Less(w.cp) {
		broken = append(broken, fmt.Sprintf("readAt %v before cp %v", w.readAt, w.cp))
	}
	if w.pending < 0 {
		broken = append(broken, fmt.Sprintf("pending %d < 0", w.pending))
	}
	if w.pending > 0 && !w.cp.Less(w.readAt) {
		broken = append(broken, fmt.Sprintf("%d pending events but readAt %v is not past cp %v", w.pending, w.readAt, w.cp))
	}
	if w.pending > 0 && w.pendingT.IsZero() {
		broken = append(broken, fmt.Sprintf("%d pending events without pendingT", w.pending))
	}
	if w.stored.IsZero() {
		broken = append(broken, "stored not set")
	}
	if w.resets < 0 {
		broken = append(broken, fmt.Sprintf("resets %d < 0", w.resets))
	}
	for s, id := range w.parked {
		if id <= 0 {
			broken = append(broken, fmt.Sprintf("stream %q parked behind dead letter %d", s, id))
		}
	}
	if len(broken) > 0 {
		return fmt.Errorf("eventstore: worker of %q partition %d: %s", w.sub.cfg.Name, w.p, strings.Join(broken, "; "))
	}
	return nil
}

// assertInvariant panics if checkInvariants is on and the state breaks the
// invariant.
func (w *worker) assertInvariant() {
	if !checkInvariants {
		return
	}
	if err := w.checkInvariant(); err != nil {
		panic(err)
	}
}

// run reads and handles the partition's events until ctx ends, the lease
// is lost (nil) or the handler fails under the Stop policy (its
// *HandlerError). It sends p on caughtUp the first time it reaches the end
// of the log, or, with SubscriptionConfig.StopAt, the stop position.
func (w *worker) run(ctx context.Context, h Handler, wake <-chan struct{}, caughtUp chan<- int) error {
	sub := w.sub
	defer w.dropPrefetch()
	if err := w.loadParked(ctx); err != nil {
		if ctx.Err() == nil {
			sub.log.Warn("strata: partition start failed", "partition", w.p, "err", err)
		}
		return err
	}
	w.assertInvariant()
	// After a failed read, wait RetryBackoff doubling up to PollInterval.
	readWait := retry.Backoff(min(sub.cfg.RetryBackoff, sub.cfg.PollInterval), sub.cfg.PollInterval)
	// Idle, poll after 2ms doubling up to PollInterval, from the last
	// activity (a page with events, a wake-up).
	idleWait := retry.Backoff(min(2*time.Millisecond, sub.cfg.PollInterval), sub.cfg.PollInterval)
	reported, woke := false, false
	for ctx.Err() == nil {
		if time.Since(w.lastSync) > sub.cfg.PollInterval {
			if err := w.sync(ctx, h); err != nil {
				return w.exit(ctx, err)
			}
		}
		started := time.Now()
		page, err := w.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d := readWait.NextBackOff()
			sub.log.Warn("strata: read failed; retrying", "partition", w.p, "err", err, "retry_in", d)
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		readWait.Reset()
		if len(page.Events) > 0 {
			woke = false
			idleWait.Reset()
			if !page.AtEnd {
				// Catching up: read the next page while this one is handled.
				w.prefetch(ctx, page.Next)
			}
			if err := w.handle(ctx, h, page, started); err != nil {
				return w.exit(ctx, err)
			}
			w.assertInvariant()
			if !reported && w.passedStop() {
				reported = true
				w.report(ctx, caughtUp)
			}
			continue
		}
		if page.Next != w.readAt {
			// A filtered read passed over events it does not select. The
			// checkpoint moves past them with the next batch.
			w.readAt = page.Next
			w.assertInvariant()
			if !page.AtEnd {
				continue
			}
		}
		if w.pending > 0 {
			// Caught up: store the checkpoint that batches without writes
			// left behind.
			if err := w.flush(ctx); err != nil {
				return w.exit(ctx, err)
			}
		}
		if woke {
			// A wake-up with nothing new to read may be a reset or a retry
			// request rather than an append: look at the partition's row.
			woke = false
			if err := w.sync(ctx, h); err != nil {
				return w.exit(ctx, err)
			}
		}
		if !reported {
			reached, again := w.reachedStop(ctx)
			if again {
				continue
			}
			if reached {
				reported = true
				w.report(ctx, caughtUp)
			}
		}
		select {
		case <-ctx.Done():
		case <-wake:
			woke = true
			idleWait.Reset()
		case <-time.After(idleWait.NextBackOff()):
		}
	}
	return nil
}

// report sends the worker's partition on caughtUp.
func (w *worker) report(ctx context.Context, caughtUp chan<- int) {
	select {
	case caughtUp <- w.p:
	case <-ctx.Done():
	}
}

// prefetched is a page read ahead, from after.
type prefetched struct {
	after Position
	page  Page
	err   error
}

// prefetch starts reading the page after the given position.
func (w *worker) prefetch(ctx context.Context, after Position) {
	ch := make(chan prefetched, 1)
	w.ahead = ch
	go func() {
		page, err := w.sub.store.readAllFiltered(ctx, after, w.sub.cfg.BatchSize, w.filter)
		ch <- prefetched{after: after, page: page, err: err}
	}()
}

// read returns the page after the checkpoint: the one read ahead if it
// starts there, else a fresh read (which meets a failed read ahead's
// error again, if it persists).
func (w *worker) read(ctx context.Context) (Page, error) {
	if w.ahead != nil {
		r := <-w.ahead
		w.ahead = nil
		if r.err == nil && r.after == w.readAt {
			return r.page, nil
		}
	}
	return w.sub.store.readAllFiltered(ctx, w.readAt, w.sub.cfg.BatchSize, w.filter)
}

// dropPrefetch waits for a read ahead to finish and forgets it.
func (w *worker) dropPrefetch() {
	if w.ahead != nil {
		<-w.ahead
		w.ahead = nil
	}
}

// sync reconciles the worker with its partition's row: it stops when the
// lease is gone, follows a checkpoint that was reset, and runs the dead
// letters whose retry was requested.
func (w *worker) sync(ctx context.Context, h Handler) error {
	w.lastSync = time.Now()
	var owner *string
	var tx, seq, resets int64
	err := w.sub.store.pool.QueryRow(ctx, w.sub.sql.partitionRow, w.sub.cfg.Name, w.p).Scan(&owner, &tx, &seq, &resets)
	if err != nil {
		w.warn(ctx, "strata: could not read the partition's row; trying again at the next poll", err)
		return nil
	}
	if owner == nil || *owner != w.sub.cfg.Owner {
		return errFenced
	}
	if cp := (Position{TxID: uint64(tx), Seq: seq}); cp != w.cp || resets != w.resets {
		w.cp, w.readAt, w.resets, w.pending = cp, cp, resets, 0
		w.assertInvariant()
		if err := w.loadParked(ctx); err != nil {
			// The worker restarts and loads them again, rather than go on
			// with dead letters that may not match the new checkpoint.
			return fmt.Errorf("after a reset: %w", err)
		}
	}
	err = w.retryDeadLetters(ctx, h)
	w.assertInvariant()
	return err
}

// warn logs a failure the worker retries later, unless ctx has ended.
func (w *worker) warn(ctx context.Context, msg string, err error, args ...any) {
	if ctx.Err() == nil {
		w.sub.log.Warn(msg, append([]any{"partition", w.p, "err", err}, args...)...)
	}
}

// exit decides what a worker's error means: a fenced checkpoint ends the
// worker quietly (the coordinator restarts it if the lease is still ours);
// a *HandlerError is passed up.
func (w *worker) exit(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, errFenced) {
		w.sub.log.Info("strata: checkpoint moved under us (lease lost or reset); restarting partition", "partition", w.p)
		return nil
	}
	var he *HandlerError
	if errors.As(err, &he) {
		w.setState(ctx, "failing", err.Error())
		return err
	}
	w.sub.log.Warn("strata: partition stopped", "partition", w.p, "err", err)
	return err
}

// handle runs one page through the handler in a single transaction; if the
// handler fails, it falls back to one event per transaction so the failure
// is pinned on one event and the events before it commit.
func (w *worker) handle(ctx context.Context, h Handler, page Page, started time.Time) error {
	events := page.Events
	live, parked := w.split(events)
	err := w.commit(ctx, live, parked, page.Next, !page.AtEnd, func(tx pgx.Tx) error {
		return w.call(ctx, h, tx, live)
	}, started)
	if err == nil || errors.Is(err, errFenced) || ctx.Err() != nil {
		return err
	}
	if len(events) == 1 {
		return w.handleOne(ctx, h, events[0], err)
	}
	if !errors.Is(err, errBreakerProbe) { // the breaker's, not the handler's
		w.metrics.failure(w.sub.isTransient(err))
	}
	for _, e := range events {
		if err := w.handleOne(ctx, h, e, nil); err != nil {
			return err
		}
		w.assertInvariant()
	}
	return nil
}

// handleOne handles a single event with retries, waiting RetryBackoff
// doubling up to MaxRetryBackoff (with jitter) between attempts; firstErr
// is the error of an attempt already made, if any.
func (w *worker) handleOne(ctx context.Context, h Handler, e Event, firstErr error) error {
	cfg := &w.sub.cfg
	attempts, err := 0, firstErr
	if err != nil {
		attempts = 1
	}
	wait := retry.Backoff(cfg.RetryBackoff, cfg.MaxRetryBackoff)
	for {
		if err != nil {
			if errors.Is(err, errFenced) {
				return err
			}
			transient := w.sub.isTransient(err)
			w.metrics.failure(transient)
			if transient {
				attempts-- // says nothing about the event
			}
			if attempts >= cfg.MaxAttempts {
				break
			}
			w.sub.log.Warn("strata: handler failed; retrying", "partition", w.p, "event", e.ID, "stream", e.StreamID, "attempt", attempts, "err", err)
			if w.sub.brk.state() == BreakerClosed { // else the breaker's state is the partition's
				w.setState(ctx, "failing", err.Error())
			}
			if !sleep(ctx, wait.NextBackOff()) {
				return ctx.Err()
			}
		}
		live, parked := w.split([]Event{e})
		started := time.Now()
		err = w.commit(ctx, live, parked, e.Position, false, func(tx pgx.Tx) error {
			return w.call(ctx, h, tx, live)
		}, started)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		attempts++
	}
	herr := &HandlerError{Subscription: cfg.Name, Event: e, Attempts: attempts, Err: err}
	if cfg.OnFailure == Stop {
		return herr
	}
	w.sub.log.Error("strata: parking event after repeated failures", "partition", w.p, "event", e.ID, "stream", e.StreamID, "attempts", attempts, "err", err)
	return w.park(ctx, e, attempts, err)
}

// call hands live events, if any, to the handler.
func (w *worker) call(ctx context.Context, h Handler, tx pgx.Tx, live []Event) error {
	if len(live) == 0 {
		return nil
	}
	return h(ctx, tx, live)
}

// split separates events of parked streams from the rest.
func (w *worker) split(events []Event) (live, parked []Event) {
	if len(w.parked) == 0 {
		return events, nil
	}
	live = make([]Event, 0, len(events))
	for _, e := range events {
		if _, ok := w.parked[e.StreamID]; ok {
			parked = append(parked, e)
		} else {
			live = append(live, e)
		}
	}
	return live, parked
}

// flush stores the checkpoint at readAt for the batches that left it
// behind (see writeBatch).
func (w *worker) flush(ctx context.Context) error {
	if err := w.advance(ctx, w.sub.store.pool, w.readAt, int64(w.pending)); err != nil {
		return err
	}
	events, started := w.pending, w.pendingT
	w.cp, w.pending, w.stored = w.readAt, 0, time.Now()
	w.assertInvariant()
	if w.sub.cfg.OnBatch != nil {
		w.sub.cfg.OnBatch(BatchInfo{Subscription: w.sub.cfg.Name, Partition: w.p, Events: events, Last: w.cp,
			LastRecordedAt: w.pendingR, Duration: time.Since(started)})
	}
	return nil
}

// checkpointDelay is how long a worker may go without storing its
// checkpoint while it handles batches that write nothing (see writeBatch).
const checkpointDelay = 100 * time.Millisecond

// minDeferBatch is the smallest batch whose checkpoint may be deferred:
// below it a round trip per batch hardly matters, and small batches keep
// their checkpoint (and the lag reported from it) exact.
const minDeferBatch = 64

// commit runs fn and advances the checkpoint to last in one transaction,
// parking the given events of parked streams in it too. The checkpoint
// update is fenced on this owner and on the previous checkpoint. more says
// the log has more to read right away (catching up), when a batch that
// wrote nothing may leave its checkpoint to a later one (see writeBatch).
func (w *worker) commit(ctx context.Context, live, parked []Event, last Position, more bool, fn func(pgx.Tx) error, started time.Time) error {
	sub := w.sub
	if sub.cfg.HandleOutsideTx {
		if err := fn(nil); err != nil {
			return err
		}
		fn = func(pgx.Tx) error { return nil }
		more = false // its effects are outside: record them at once
		// The handler's effects are done: record them even if the
		// subscription is stopping meanwhile (the fence keeps it safe), so
		// that a clean stop does not repeat them.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), sub.cfg.LeaseTTL)
		defer cancel()
	}
	canDefer := more && len(live) >= minDeferBatch && time.Since(w.stored) < checkpointDelay
	stored, err := w.writeBatch(ctx, fn, parked, last, len(live), canDefer)
	if err != nil {
		return err
	}
	w.metrics.batch(len(live), len(parked), time.Since(started))
	if !stored {
		w.readAt = last
		if w.pending == 0 {
			w.pendingT = started
		}
		w.pending += len(live)
		if n := len(live); n > 0 {
			w.pendingR = live[n-1].RecordedAt
		}
		return nil
	}
	events := len(live) + w.pending
	recorded := time.Time{}
	if w.pending > 0 {
		started, recorded = w.pendingT, w.pendingR
	}
	w.cp, w.readAt, w.pending, w.stored = last, last, 0, time.Now()
	if sub.cfg.OnBatch != nil {
		info := BatchInfo{Subscription: sub.cfg.Name, Partition: w.p, Events: events, Parked: len(parked), Last: last, Duration: time.Since(started)}
		info.LastRecordedAt = recorded
		if n := len(live); n > 0 {
			info.LastRecordedAt = live[n-1].RecordedAt
		}
		sub.cfg.OnBatch(info)
	}
	return nil
}

// writeBatch is the transactional part of a batch: the handler (unless it
// ran outside), the parked events of parked streams, the checkpoint. The
// transaction begins only when the handler uses it or there are events to
// park: when neither happens, one autocommit statement moves the checkpoint
// (a round trip instead of three: BEGIN, UPDATE, COMMIT), or, with
// canDefer, nothing does: the batch wrote nothing, so a later batch may
// store the checkpoint past it (within checkpointDelay) as well as this one
// could. A crash before then repeats batches that had no effects in the
// database; the fence is unchanged. stored says whether the checkpoint was
// stored.
//
// The checkpoint's update is the transaction's first statement, before
// anything the handler writes: it locks the partition's row until the
// commit, so that a reset (which locks the rows first, then clears the
// read model) either waits for the batch and then clears what it wrote, or
// fences it. Updated last, a batch could commit between a reset's DELETE
// and its update of the row and keep rows the DELETE did not see.
func (w *worker) writeBatch(ctx context.Context, fn func(pgx.Tx) error, parked []Event, last Position, live int, canDefer bool) (stored bool, err error) {
	sub := w.sub
	handled := int64(live + w.pending)
	tx := &batchTx{ctx: ctx, pool: sub.store.pool, first: func(ctx context.Context, tx pgx.Tx) error {
		return w.advance(ctx, tx, last, handled)
	}}
	defer tx.end(ctx)
	if err := fn(tx); err != nil {
		if errors.Is(tx.err, errFenced) {
			// Whatever the handler made of it, the batch was fenced.
			return false, errFenced
		}
		return false, err
	}
	if tx.err != nil {
		// BEGIN failed under a handler that did not pass the error on.
		return false, tx.err
	}
	if err := w.parkBehind(ctx, tx, parked); err != nil {
		if errors.Is(tx.err, errFenced) {
			return false, errFenced
		}
		return false, err
	}
	if !tx.started() {
		if canDefer {
			return false, nil
		}
		return true, w.advance(ctx, sub.store.pool, last, handled)
	}
	return true, tx.tx.Commit(ctx)
}

// advance moves the partition's checkpoint from cp to to, fenced: only the
// lease owner, from the checkpoint and resets it knows of, may move it.
func (w *worker) advance(ctx context.Context, q querier, to Position, handled int64) error {
	tag, err := q.Exec(ctx, w.sub.sql.advance, w.sub.cfg.Name, w.p, w.sub.cfg.Owner,
		int64(w.cp.TxID), w.cp.Seq, int64(to.TxID), to.Seq, handled, w.sub.cfg.LeaseTTL.Seconds(), w.resets)
	if err != nil {
		return fmt.Errorf("advance checkpoint: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return errFenced
	}
	return nil
}

// setState records the partition's state and last error, best effort.
func (w *worker) setState(ctx context.Context, state, lastErr string) {
	var e *string
	if lastErr != "" {
		e = &lastErr
	}
	if _, err := w.sub.store.pool.Exec(ctx, w.sub.sql.setState, w.sub.cfg.Name, w.p, w.sub.cfg.Owner, state, e); err != nil && ctx.Err() == nil {
		w.sub.log.Warn("strata: could not record state", "partition", w.p, "err", err)
	}
}

// workerQueries are the statements of a partition worker.
type workerQueries struct {
	partitionRow, advance, setState string
}

func buildWorkerQueries(r *strings.Replacer) workerQueries {
	return workerQueries{
		partitionRow: r.Replace(`SELECT owner, position_tx, position_seq, resets FROM {schema}.subscriptions WHERE name = $1 AND partition = $2`),
		// The fence: only the lease owner, and only from the checkpoint it
		// read (and the number of resets it knows of), may move the
		// checkpoint. A reset or a takeover makes this match nothing and
		// the batch rolls back.
		advance: r.Replace(`UPDATE {schema}.subscriptions
			SET position_tx = $6, position_seq = $7, events_handled = events_handled + $8,
			    lease_until = now() + make_interval(secs => $9), state = 'running', last_error = NULL, updated_at = now()
			WHERE name = $1 AND partition = $2 AND owner = $3 AND position_tx = $4 AND position_seq = $5 AND resets = $10`),
		setState: r.Replace(`UPDATE {schema}.subscriptions SET state = $4, last_error = $5, updated_at = now()
			WHERE name = $1 AND partition = $2 AND owner = $3`),
	}
}

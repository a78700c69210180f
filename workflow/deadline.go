package workflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtx"
)

// candidate is a due deadline, as the scan saw it.
type candidate struct {
	id    int64
	key   string
	name  string
	dueAt time.Time
}

// scanSize is how many due deadlines one scan returns.
const scanSize = 64

// runDeadlines is the deadline worker: it fires the due deadlines in due
// order, then sleeps until the next one is due, a reaction schedules one
// (NOTIFY) or the poll interval passes, whichever comes first.
//
// Firing is at most once and at least once: a deadline's row is deleted
// in the transaction of the reaction to it, under the instance's lock
// (which every writer of the instance's deadlines holds), so a process
// that dies mid-reaction leaves the row for the next one, and a second
// process that meets the row after the commit finds it gone.
func (r *Runner[S]) runDeadlines(ctx context.Context, wake <-chan struct{}) {
	r.poll(ctx, wake, "firing deadlines", r.FireDue, r.sql.nextDue)
}

// FireDue fires the deadlines that are due by the workflow's clock, in due
// order, each in its own transaction, and returns how many fired. busy
// says some due deadline was passed over because its instance was in
// another reaction at that moment (it fires at a later call). Run calls
// it; it is exported for tests and for programs that fire deadlines from
// their own loop.
func (r *Runner[S]) FireDue(ctx context.Context) (fired int, busy bool, err error) {
	for {
		now := r.cfg.Clock.Now()
		rows, err := r.store.Pool().Query(ctx, r.sql.dueCandidates, r.wf.Name, now, scanSize)
		if err != nil {
			return fired, busy, fmt.Errorf("workflow %q: scan deadlines: %w", r.wf.Name, err)
		}
		var c candidate
		cands, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (candidate, error) {
			err := row.Scan(&c.id, &c.key, &c.name, &c.dueAt)
			return c, err
		})
		if err != nil {
			return fired, busy, fmt.Errorf("workflow %q: scan deadlines: %w", r.wf.Name, err)
		}
		progress := false
		for group := range slices.Chunk(cands, max(1, r.cfg.BatchSize/4)) {
			n, b, err := r.fire(ctx, group)
			if err == nil {
				fired, busy, progress = fired+n, busy || b, progress || n > 0 || !b
				continue
			}
			if ctx.Err() != nil {
				return fired, busy, ctx.Err()
			}
			// One at a time, to pin the failure on one deadline.
			for _, c := range group {
				n, b, err := r.fire(ctx, []candidate{c})
				if err != nil {
					if ctx.Err() != nil {
						return fired, busy, ctx.Err()
					}
					r.failed(ctx, c, err)
					continue
				}
				fired, busy, progress = fired+n, busy || b, progress || !b
			}
		}
		if len(cands) < scanSize || !progress {
			return fired, busy, nil
		}
	}
}

// fire runs the reactions to these deadlines, in their order, in one
// transaction that also deletes them: one commit for many. An instance
// held by another transaction is passed over (busy); a deadline that is
// gone (fired, cancelled or moved meanwhile) is skipped.
func (r *Runner[S]) fire(ctx context.Context, cands []candidate) (fired int, busy bool, err error) {
	var done []Reaction
	err = pgtx.Run(ctx, r.store.Pool(), pgtx.Options{}, func(tx pgx.Tx) error {
		fired, busy, done = 0, false, done[:0]
		for _, c := range cands {
			locked, err := r.tryLock(ctx, tx, c.key)
			if err != nil {
				return err
			}
			if !locked {
				busy = true
				continue
			}
			// Inputs already routed to the instance are older than the
			// firing: they are decided first (one may cancel the
			// deadline). Queued ones are the reaction workers' to take
			// now; a parked one holds the instance's deadlines too.
			var queued, parked int
			if err := tx.QueryRow(ctx, r.sql.inboxPending, r.wf.Name, c.key).Scan(&queued, &parked); err != nil {
				return err
			}
			if queued > 0 || parked > 0 {
				busy = busy || queued > 0
				continue
			}
			now := r.cfg.Clock.Now()
			var f Fired
			err = tx.QueryRow(ctx, r.sql.claimDeadline, c.id, now).Scan(&f.Name, &f.DueAt)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			inst, err := r.load(ctx, tx, c.key)
			if err != nil {
				return err
			}
			input := fmt.Sprintf("deadline:%s:%d:%d", f.Name, c.id, f.DueAt.UnixNano())
			rc, err := r.react(ctx, tx, inst, Input{Deadline: &f, Key: c.key, Time: now}, input)
			if err != nil {
				return err
			}
			done = append(done, rc)
		}
		return nil
	})
	if err != nil {
		return 0, busy, err
	}
	now := r.cfg.Clock.Now()
	for _, rc := range done {
		rc.FiredAt = now
		r.tel.fired(ctx, r.wf.Name, now.Sub(rc.Deadline.DueAt))
		if r.cfg.OnReaction != nil {
			r.cfg.OnReaction(rc)
		}
	}
	return len(done), busy, nil
}

// failed records a failed attempt at a deadline: it is tried again after
// a backoff that doubles with each attempt, and parked (failed) after
// MaxAttempts.
func (r *Runner[S]) failed(ctx context.Context, c candidate, cause error) {
	attempts, parked, err := r.recordFailure(ctx, r.sql.failDeadline, c.id, cause)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.log.Warn("strata: could not record a deadline's failure", "instance", c.key, "deadline", c.name, "err", err)
		}
	case parked:
		r.log.Error("strata: parking a deadline after repeated failures", "instance", c.key, "deadline", c.name, "attempts", attempts, "err", cause)
	default:
		r.log.Warn("strata: deadline reaction failed; retrying", "instance", c.key, "deadline", c.name, "attempt", attempts, "err", cause)
	}
}

// RetryDeadlines makes the workflow's parked (failed) deadlines due again
// and returns how many there were.
func (r *Runner[S]) RetryDeadlines(ctx context.Context) (int64, error) {
	return r.retryParked(ctx, "deadlines", r.sql.retryDeadlines)
}

// retryParked runs the statement that makes the workflow's parked
// deadlines or inputs (what) due again, and wakes the workers when there
// were any.
func (r *Runner[S]) retryParked(ctx context.Context, what, query string) (int64, error) {
	tag, err := r.store.Pool().Exec(ctx, query, r.wf.Name)
	if err != nil {
		return 0, fmt.Errorf("workflow %q: retry %s: %w", r.wf.Name, what, err)
	}
	if tag.RowsAffected() > 0 {
		_, _ = r.store.Pool().Exec(ctx, r.sql.notify, r.ch, r.wf.Name)
	}
	return tag.RowsAffected(), nil
}

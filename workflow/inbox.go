package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtx"
)

// runInbox is one reaction worker: it takes the instances with queued
// inputs, oldest input first, one at a time, and reacts to each
// instance's inputs in log order, until ctx ends. Instances another
// worker (of this process or another) holds are passed over.
func (r *Runner[S]) runInbox(ctx context.Context, wake <-chan struct{}) {
	r.poll(ctx, wake, "workflow reactions", r.React, r.sql.inboxNextRetry)
}

// React reacts to the queued inputs of every instance it can take, and
// returns how many inputs it handled. busy says an instance with inputs
// was passed over because another transaction held it. The reaction
// workers of Run call it; it is exported for tests and for programs that
// drive reactions from their own loop.
func (r *Runner[S]) React(ctx context.Context) (handled int, busy bool, err error) {
	for {
		rows, err := r.store.Pool().Query(ctx, r.sql.inboxScan, r.wf.Name, r.cfg.Clock.Now(), scanSize)
		if err != nil {
			return handled, busy, fmt.Errorf("workflow %q: scan inputs: %w", r.wf.Name, err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return handled, busy, fmt.Errorf("workflow %q: scan inputs: %w", r.wf.Name, err)
		}
		var distinct []string
		seen := map[string]bool{}
		for _, key := range keys {
			if !seen[key] {
				seen[key] = true
				distinct = append(distinct, key)
			}
		}
		progress := false
		for group := range slices.Chunk(distinct, max(1, r.cfg.BatchSize/4)) {
			n, b, err := r.reactInstances(ctx, group, r.cfg.BatchSize)
			if err == nil {
				busy = busy || b
				progress = progress || n > 0
				handled += n
				continue
			}
			if ctx.Err() != nil {
				return handled, busy, ctx.Err()
			}
			// One at a time, to pin the failure on one instance, then on
			// one input of it.
			for _, key := range group {
				n, b, err := r.reactInstances(ctx, []string{key}, r.cfg.BatchSize)
				if err != nil && ctx.Err() == nil {
					n, b, err = r.reactInstances(ctx, []string{key}, 1)
				}
				if err != nil {
					if ctx.Err() != nil {
						return handled, busy, ctx.Err()
					}
					var fe *inputError
					if errors.As(err, &fe) {
						r.failInput(ctx, fe)
						continue
					}
					return handled, busy, err
				}
				busy = busy || b
				progress = progress || n > 0
				handled += n
			}
		}
		if len(keys) < scanSize || !progress {
			return handled, busy, nil
		}
	}
}

// inputError is a reaction's failure on one queued input.
type inputError struct {
	id  int64
	key string
	err error
}

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// queued is an input as the inbox holds it.
type queued struct {
	id      int64
	e       eventstore.Event // opened (see openInputs)
	stored  eventstore.Event // as the inbox holds it: a failure's text is redacted with it
	failed  bool
	retryAt *time.Time
}

// reactInstances reacts to up to limit queued inputs of each of the
// instances with these keys, all in one transaction, which also deletes
// them: one commit for many instances. Instances held by another
// transaction are passed over (busy). An input stuck behind a parked one,
// or waiting for its retry, is left alone. Any failure rolls back the
// whole transaction; the caller then takes the instances one at a time.
func (r *Runner[S]) reactInstances(ctx context.Context, keys []string, limit int) (n int, busy bool, err error) {
	var done []Reaction
	err = pgtx.Run(ctx, r.store.Pool(), pgtx.Options{}, func(tx pgx.Tx) error {
		n, busy, done = 0, false, done[:0]
		for _, key := range keys {
			locked, err := r.tryLock(ctx, tx, key)
			if err != nil {
				return err
			}
			if !locked {
				busy = true
				continue
			}
			k, err := r.reactInstanceTx(ctx, tx, key, limit, &done)
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, busy, err
	}
	if r.cfg.OnReaction != nil {
		for _, rc := range done {
			r.cfg.OnReaction(rc)
		}
	}
	return n, busy, nil
}

// reactInstanceTx is one instance's part of reactInstances; the caller
// holds the instance's lock.
func (r *Runner[S]) reactInstanceTx(ctx context.Context, tx pgx.Tx, key string, limit int, done *[]Reaction) (int, error) {
	inputs, err := r.queuedInputs(ctx, tx, key, limit)
	if err != nil || len(inputs) == 0 {
		return 0, err
	}
	now := r.cfg.Clock.Now()
	if inputs[0].failed || (inputs[0].retryAt != nil && inputs[0].retryAt.After(now)) {
		return 0, nil
	}
	inst, err := r.load(ctx, tx, key)
	if err != nil {
		return 0, err
	}
	ids := make([]int64, 0, len(inputs))
	for _, q := range inputs {
		if q.failed || (q.retryAt != nil && q.retryAt.After(now)) {
			break // parked or waiting: the later inputs wait behind it
		}
		// A failure's text is recorded after this transaction, without
		// the input's personal values.
		redacted := func(err error) error {
			return r.store.RedactError([]eventstore.Event{q.stored}, []eventstore.Event{q.e}, err)
		}
		ev, err := r.reg.Decode(q.e)
		if err != nil {
			return 0, &inputError{id: q.id, key: key, err: redacted(fmt.Errorf("workflow %q: decode %s (%s of %q): %w", r.wf.Name, q.e.ID, q.e.Type, q.e.StreamID, err))}
		}
		rc, err := r.react(ctx, tx, inst, Input{Event: ev, Raw: q.e, Key: key, Time: now}, q.e.ID.String())
		if err != nil {
			return 0, &inputError{id: q.id, key: key, err: redacted(err)}
		}
		*done = append(*done, rc)
		ids = append(ids, q.id)
	}
	if _, err := tx.Exec(ctx, r.sql.inboxDelete, r.wf.Name, ids); err != nil {
		return 0, fmt.Errorf("workflow %q: instance %q: %w", r.wf.Name, key, err)
	}
	return len(ids), nil
}

// queuedInputs reads an instance's queued inputs in log order.
func (r *Runner[S]) queuedInputs(ctx context.Context, tx pgx.Tx, key string, limit int) ([]queued, error) {
	rows, err := tx.Query(ctx, r.sql.inboxRows, r.wf.Name, key, limit)
	if err != nil {
		return nil, fmt.Errorf("workflow %q: instance %q: inputs: %w", r.wf.Name, key, err)
	}
	var out []queued
	var q queued
	var id, data, meta string
	var tx64, seq int64
	var sv int32
	_, err = pgx.ForEachRow(rows, []any{&q.id, &id, &q.e.StreamID, &q.e.Version, &tx64, &seq, &q.e.Type, &sv,
		&data, &meta, &q.e.RecordedAt, &q.failed, &q.retryAt}, func() error {
		e := q
		var err error
		if e.e.ID, err = uuid.Parse(id); err != nil {
			return err
		}
		e.e.Position = eventstore.Position{TxID: uint64(tx64), Seq: seq}
		e.e.SchemaVersion, e.e.Data = int(sv), []byte(data)
		if err := json.Unmarshal([]byte(meta), &e.e.Metadata); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("workflow %q: instance %q: inputs: %w", r.wf.Name, key, err)
	}
	return r.openInputs(ctx, tx, key, out)
}

// openInputs opens the personal fields of queued inputs (the inbox keeps
// them sealed) in the reaction's transaction, their keys locked until it
// ends: a forget waits for the reaction, and the next one reads erased
// values.
func (r *Runner[S]) openInputs(ctx context.Context, tx pgx.Tx, key string, qs []queued) ([]queued, error) {
	events := make([]eventstore.Event, len(qs))
	for i, q := range qs {
		events[i] = q.e
	}
	opened, err := r.store.OpenTx(ctx, tx, events)
	if err != nil {
		return nil, fmt.Errorf("workflow %q: instance %q: inputs: %w", r.wf.Name, key, err)
	}
	for i := range qs {
		qs[i].stored, qs[i].e = qs[i].e, opened[i]
	}
	return qs, nil
}

// failInput records a failed attempt at a queued input: it is tried again
// after a backoff that doubles with each attempt, and parked after
// MaxAttempts (never for a transient failure, such as a lost race for a
// stream's order).
func (r *Runner[S]) failInput(ctx context.Context, fe *inputError) {
	attempts, parked, err := r.recordFailure(ctx, r.sql.inboxFail, fe.id, fe.err)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.log.Warn("strata: could not record a reaction's failure", "instance", fe.key, "err", err)
		}
	case parked:
		r.log.Error("strata: parking a workflow input after repeated failures", "instance", fe.key, "attempts", attempts, "err", fe.err)
	default:
		r.log.Warn("strata: workflow reaction failed; retrying", "instance", fe.key, "attempt", attempts, "err", fe.err)
	}
}

// recordFailure runs a failure update (inboxFail, failDeadline) for row
// id.
func (r *Runner[S]) recordFailure(ctx context.Context, query string, id int64, cause error) (attempts int, parked bool, err error) {
	maxAttempts := r.cfg.MaxAttempts
	if transient(cause) {
		maxAttempts = 1 << 30
	}
	err = r.store.Pool().QueryRow(ctx, query, id, r.wf.Name, cause.Error(), r.cfg.Clock.Now(), maxAttempts,
		r.cfg.RetryBackoff.Seconds(), r.cfg.MaxRetryBackoff.Seconds()).Scan(&attempts, &parked)
	return attempts, parked, err
}

// RetryInputs makes the workflow's parked inputs due again and returns
// how many there were.
func (r *Runner[S]) RetryInputs(ctx context.Context) (int64, error) {
	return r.retryParked(ctx, "inputs", r.sql.inboxRetry)
}

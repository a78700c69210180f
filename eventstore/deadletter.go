package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Dead letters. An event the handler keeps failing on is parked (under the
// Park policy): recorded in dead_letters with the checkpoint moved past it,
// in one statement. Later events of its stream are parked behind it in
// their batch's transaction (worker.writeBatch), so a stream's order is
// never broken while other streams go on. RetryDeadLetters (deadletter_admin.go) marks
// dead letters for retry; the partition's worker runs them, stream by
// stream in their original order, at its next sync.

// park records e as a dead letter and moves the checkpoint past it, in one
// statement: the dead letter is inserted only if the fenced checkpoint
// update matched, so there is never a dead letter without its checkpoint,
// nor a checkpoint past an event that is neither handled nor parked.
func (w *worker) park(ctx context.Context, e Event, attempts int, cause error) error {
	sub := w.sub
	var blockedBy *int64
	if first, ok := w.parked[e.StreamID]; ok {
		blockedBy = &first
	}
	var id int64
	err := sub.store.pool.QueryRow(ctx, sub.sql.park, sub.cfg.Name, w.p, sub.cfg.Owner,
		int64(w.cp.TxID), w.cp.Seq, int64(e.Position.TxID), e.Position.Seq, int64(w.pending), sub.cfg.LeaseTTL.Seconds(), w.resets,
		e.ID, e.StreamID, e.Type, cause.Error(), attempts, blockedBy).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return errFenced
	}
	if err != nil {
		return fmt.Errorf("park: %w", err)
	}
	w.cp, w.readAt, w.pending, w.stored = e.Position, e.Position, 0, time.Now()
	if _, ok := w.parked[e.StreamID]; !ok {
		if w.parked == nil {
			w.parked = map[string]int64{}
		}
		w.parked[e.StreamID] = id
	}
	w.assertInvariant()
	w.metrics.batch(0, 1, 0)
	if sub.cfg.OnBatch != nil {
		sub.cfg.OnBatch(BatchInfo{Subscription: sub.cfg.Name, Partition: w.p, Parked: 1, Last: e.Position, LastRecordedAt: e.RecordedAt})
	}
	return nil
}

// parkBehind records the events of parked streams among a batch's events
// as dead letters blocked by their stream's first, in the batch's
// transaction.
func (w *worker) parkBehind(ctx context.Context, tx pgx.Tx, parked []Event) error {
	sub := w.sub
	for _, e := range parked {
		first := w.parked[e.StreamID]
		if _, err := tx.Exec(ctx, sub.sql.insertDeadLetter, sub.cfg.Name, w.p, int64(e.Position.TxID), e.Position.Seq, e.ID, e.StreamID, e.Type,
			fmt.Sprintf("parked behind dead letter %d of the same stream", first), 0, first); err != nil {
			return fmt.Errorf("park: %w", err)
		}
	}
	return nil
}

// loadParked reads which streams of this partition have dead letters. On
// an error w.parked is left as it was: a partial set would let events of a
// parked stream overtake its dead letters.
func (w *worker) loadParked(ctx context.Context) error {
	rows, err := w.sub.store.pool.Query(ctx, w.sub.sql.parkedStreams, w.sub.cfg.Name, w.p)
	if err != nil {
		return fmt.Errorf("load dead letters: %w", err)
	}
	var stream string
	var id int64
	parked := map[string]int64{}
	if _, err := pgx.ForEachRow(rows, []any{&stream, &id}, func() error {
		parked[stream] = id
		return nil
	}); err != nil {
		return fmt.Errorf("load dead letters: %w", err)
	}
	w.parked = parked
	return nil
}

// retryOne runs one dead letter's event through the handler and deletes
// the dead letter, in one transaction (the handler runs before it with
// HandleOutsideTx).
func (w *worker) retryOne(ctx context.Context, h Handler, id int64, e Event) error {
	sub := w.sub
	if sub.cfg.HandleOutsideTx {
		if err := h(ctx, nil, []Event{e}); err != nil {
			return err
		}
	}
	return sub.store.inTx(ctx, func(tx pgx.Tx) error {
		// Lock the partition's row first, fenced, as a batch does (see
		// writeBatch): a reset then waits for this transaction or fences it.
		tag, err := tx.Exec(ctx, sub.sql.lockPartition, sub.cfg.Name, w.p, sub.cfg.Owner, w.resets)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errFenced
		}
		if !sub.cfg.HandleOutsideTx {
			if err := h(ctx, tx, []Event{e}); err != nil {
				return err
			}
		}
		tag, err = tx.Exec(ctx, sub.sql.deleteDeadLetter, id, sub.cfg.Name, w.p, sub.cfg.Owner)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errFenced
		}
		return nil
	})
}

// retryDeadLetters runs this partition's dead letters whose retry was
// requested, stream by stream in their original order. A success deletes
// the dead letter in the handler's transaction; a stream with no dead
// letters left is unparked. A failure leaves the rest of that stream
// parked. A database error is logged and the retry tried again at the
// next sync.
func (w *worker) retryDeadLetters(ctx context.Context, h Handler) error {
	sub := w.sub
	items, err := w.retryRequested(ctx)
	if err != nil {
		w.warn(ctx, "strata: could not read the dead letters to retry; trying again at the next poll", err)
		return nil
	}
	if len(items) == 0 {
		return nil
	}
	failed := map[string]bool{}
	done := map[string]bool{}
	for _, it := range items {
		if failed[it.e.StreamID] {
			continue
		}
		err := w.retryOne(ctx, h, it.id, it.e)
		if errors.Is(err, errFenced) {
			return err
		}
		if err != nil {
			w.metrics.failure(w.sub.isTransient(err))
			// The stream stays parked from this event on: none of its later
			// dead letters may run before it.
			failed[it.e.StreamID] = true
			if _, err2 := sub.store.pool.Exec(ctx, sub.sql.retryFailed, it.id, err.Error(), sub.cfg.Name, w.p, it.e.StreamID); err2 != nil {
				w.warn(ctx, "strata: could not record a failed dead letter retry; trying again at the next poll", err2, "dead_letter", it.id, "retry_err", err)
				return nil
			}
			continue
		}
		done[it.e.StreamID] = true
	}
	// Events of a retried stream parked while the retry ran are retried
	// next, so that the stream drains completely.
	for stream := range done {
		if !failed[stream] {
			if _, err := sub.store.pool.Exec(ctx, sub.sql.retryRest, sub.cfg.Name, w.p, stream); err != nil {
				w.warn(ctx, "strata: could not request the retry of a stream's later dead letters; trying again at the next poll", err, "stream", stream)
				return nil
			}
		}
	}
	return w.loadParked(ctx)
}

// deadLetter is a dead letter's ID with its event.
type deadLetter struct {
	id int64
	e  Event
}

// retryRequested reads the partition's dead letters whose retry was
// requested, in the order they were parked.
func (w *worker) retryRequested(ctx context.Context) ([]deadLetter, error) {
	rows, err := w.sub.store.pool.Query(ctx, w.sub.sql.retryRequested, w.sub.cfg.Name, w.p)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []deadLetter
	var sc eventScanner
	for rows.Next() {
		var d deadLetter
		if d.e, err = sc.scanWithID(rows, &d.id); err != nil {
			return nil, err
		}
		items = append(items, d)
	}
	return items, rows.Err()
}

func (sc *eventScanner) scanWithID(rows pgx.Rows, id *int64) (Event, error) {
	var e Event
	sc.meta, sc.corr, sc.caus = nil, nil, nil
	err := rows.Scan(id, &sc.pos, &sc.tx, &e.ID, &e.StreamID, &e.Version, &e.Type, &sc.sv, &e.Data, &sc.meta, &sc.corr, &sc.caus, &e.RecordedAt)
	if err != nil {
		return Event{}, err
	}
	return sc.finish(e)
}

// deadLetterQueries are the statements on dead letters.
type deadLetterQueries struct {
	park, insertDeadLetter, parkedStreams, lockPartition, retryRequested, deleteDeadLetter, retryFailed, retryRest string
}

func buildDeadLetterQueries(r *strings.Replacer) deadLetterQueries {
	return deadLetterQueries{
		// The dead letter and the checkpoint past it, in one statement:
		// the fenced update of the checkpoint (the one advance makes) and
		// an insert that takes its row from the update's RETURNING, so a
		// fenced park (a lost lease, a reset) writes nothing at all.
		park: r.Replace(`WITH moved AS (
				UPDATE {schema}.subscriptions
				SET position_tx = $6, position_seq = $7, events_handled = events_handled + $8,
				    lease_until = now() + make_interval(secs => $9), state = 'running', last_error = NULL, updated_at = now()
				WHERE name = $1 AND partition = $2 AND owner = $3 AND position_tx = $4 AND position_seq = $5 AND resets = $10
				RETURNING name, partition, position_tx, position_seq)
			INSERT INTO {schema}.dead_letters
				(subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts, blocked_by)
			SELECT name, partition, position_tx, position_seq, $11::uuid, $12::text, $13::text, $14::text, $15::int, $16::bigint FROM moved
			RETURNING id`),
		insertDeadLetter: r.Replace(`INSERT INTO {schema}.dead_letters
			(subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts, blocked_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`),
		parkedStreams: r.Replace(`SELECT DISTINCT ON (stream_id) stream_id, id FROM {schema}.dead_letters
			WHERE subscription = $1 AND partition = $2 ORDER BY stream_id, id`),
		// A dead letter's retry locks its partition's row first, fenced on
		// the owner and the resets it knows of.
		lockPartition: r.Replace(`SELECT 1 FROM {schema}.subscriptions
			WHERE name = $1 AND partition = $2 AND owner = $3 AND resets = $4 FOR NO KEY UPDATE`),
		retryRequested: r.Replace(`SELECT d.id, e.*
			FROM {schema}.dead_letters d
			JOIN LATERAL (SELECT {event_columns} FROM {schema}.events WHERE event_id = d.event_id) e ON true
			WHERE d.subscription = $1 AND d.partition = $2 AND d.retry_requested
			ORDER BY d.id`),
		deleteDeadLetter: r.Replace(`DELETE FROM {schema}.dead_letters d USING {schema}.subscriptions s
			WHERE d.id = $1 AND s.name = $2 AND s.partition = $3 AND s.owner = $4`),
		retryFailed: r.Replace(`UPDATE {schema}.dead_letters
			SET retry_requested = false,
			    attempts = attempts + CASE WHEN id = $1 THEN 1 ELSE 0 END,
			    error = CASE WHEN id = $1 THEN $2 ELSE error END
			WHERE subscription = $3 AND partition = $4 AND stream_id = $5`),
		retryRest: r.Replace(`UPDATE {schema}.dead_letters SET retry_requested = true
			WHERE subscription = $1 AND partition = $2 AND stream_id = $3`),
	}
}

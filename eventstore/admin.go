package eventstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Head describes the end of the log.
type Head struct {
	// Position is the last committed event's position in log order
	// (zero when the log is empty).
	Position Position
	// Events is the number of events in the log.
	Events int64
	// Streams is the number of streams.
	Streams int64
	// RecordedAt is when the last event was recorded.
	RecordedAt time.Time
}

// Head returns the end of the log: every committed event, including those
// a gap-safe reader cannot see yet.
func (s *Store) Head(ctx context.Context) (Head, error) {
	var h Head
	var tx, seq *int64
	var at *time.Time
	// Index: events_log_idx, read backwards once for the last entry.
	err := s.pool.QueryRow(ctx, `SELECT last.transaction_id, last.position, last.recorded_at,
			(SELECT count(*) FROM `+s.schema+`.events),
			(SELECT count(*) FROM `+s.schema+`.streams)
		FROM (SELECT 1) one
		LEFT JOIN LATERAL (SELECT transaction_id, position, recorded_at FROM `+s.schema+`.events
			ORDER BY transaction_id DESC, position DESC LIMIT 1) last ON true`).Scan(&tx, &seq, &at, &h.Events, &h.Streams)
	if err != nil {
		return Head{}, fmt.Errorf("eventstore: head: %w", err)
	}
	if tx != nil {
		h.Position = Position{TxID: uint64(*tx), Seq: *seq}
	}
	if at != nil {
		h.RecordedAt = *at
	}
	return h, nil
}

// HorizonHolder is the oldest open transaction on the server that holds an
// ID: until it ends, gap-safe readers cannot read past it (the price of
// never skipping an event). It may be in another database of the cluster.
type HorizonHolder struct {
	// PID is the backend's process ID (pg_terminate_backend takes it).
	PID int
	// Database is the backend's database.
	Database string
	// ApplicationName is the client's application_name.
	ApplicationName string
	// State is the backend's state, such as "idle in transaction".
	State string
	// Age is how long its transaction has been open.
	Age time.Duration
	// Query is the backend's latest statement, cut to 200 characters.
	Query string
}

// Horizon returns the oldest transaction holding back gap-safe readers, or
// nil when none is older than minAge. Seeing other roles' sessions needs
// the pg_read_all_stats role; without it they are reported without details.
func (s *Store) Horizon(ctx context.Context, minAge time.Duration) (*HorizonHolder, error) {
	var h HorizonHolder
	var secs float64
	var db, app, state, query *string
	err := s.pool.QueryRow(ctx, `SELECT pid, datname, application_name, state,
			extract(epoch FROM now() - xact_start)::float8, left(query, 200)
		FROM pg_stat_activity
		WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
		  AND xact_start <= now() - make_interval(secs => $1)
		ORDER BY age(backend_xid) DESC LIMIT 1`, minAge.Seconds()).Scan(&h.PID, &db, &app, &state, &secs, &query)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: horizon: %w", err)
	}
	h.Database, h.ApplicationName, h.State, h.Query = deref(db), deref(app), deref(state), deref(query)
	h.Age = time.Duration(secs * float64(time.Second))
	return &h, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// SubscriptionStatus is the state of one subscription partition.
type SubscriptionStatus struct {
	// Name is the subscription's name.
	Name string
	// Partition and Partitions say which part of the log this row covers.
	Partition int
	// Partitions is the subscription's partition count.
	Partitions int
	// Checkpoint is the last position handled.
	Checkpoint Position
	// Owner is the process holding the lease ("" when none does).
	Owner string
	// LeaseUntil is when the lease runs out unless renewed.
	LeaseUntil time.Time
	// State is "running", "failing", "stopped" or "idle" (never run, or
	// released).
	State string
	// LastError is the handler's last error while failing.
	LastError string
	// EventsHandled counts events handled since the subscription began.
	EventsHandled int64
	// Lag is the number of events (matching the subscription's filter and
	// partition) committed after the checkpoint, counted up to 1,000,000.
	Lag int64
	// LagTime is how long ago the oldest of those events was recorded
	// (zero when Lag is 0).
	LagTime time.Duration
	// DeadLetters counts the partition's dead letters.
	DeadLetters int64
	// UpdatedAt is the last change to the row (a batch, a claim, a state).
	UpdatedAt time.Time
}

// SubscriptionStatuses returns every subscription partition's status,
// ordered by name and partition. name "" means all subscriptions.
func (s *Store) SubscriptionStatuses(ctx context.Context, name string) ([]SubscriptionStatus, error) {
	if err := checkNames("subscription status", name); err != nil {
		return nil, err
	}
	// Lag counts with the subscription's own filter, through
	// events_log_idx from the checkpoint, capped so a far-behind
	// subscription costs a bounded scan.
	rows, err := s.pool.Query(ctx, `SELECT s.name, s.partition, s.partitions, s.position_tx, s.position_seq,
			coalesce(s.owner, ''), coalesce(s.lease_until, 'epoch'), s.state, coalesce(s.last_error, ''), s.events_handled, s.updated_at,
			lag.n, coalesce(extract(epoch FROM now() - lag.oldest), 0)::float8,
			(SELECT count(*) FROM `+s.schema+`.dead_letters d WHERE d.subscription = s.name AND d.partition = s.partition)
		FROM `+s.schema+`.subscriptions s
		CROSS JOIN LATERAL (
			SELECT count(*) AS n, min(recorded_at) AS oldest FROM (
				SELECT e.recorded_at FROM `+s.schema+`.events e
				WHERE (e.transaction_id, e.position) > (s.position_tx, s.position_seq)
				  AND (cardinality(s.categories) = 0 OR e.category = ANY(s.categories))
				  AND (cardinality(s.event_types) = 0 OR e.event_type = ANY(s.event_types))
				  AND (s.partitions = 1 OR `+partitionExpr("s.partitions")+` = s.partition)
				LIMIT 1000000) x) lag
		WHERE $1 = '' OR s.name = $1
		ORDER BY s.name, s.partition`, name)
	if err != nil {
		return nil, fmt.Errorf("eventstore: subscription status: %w", err)
	}
	var out []SubscriptionStatus
	var st SubscriptionStatus
	var tx int64
	var lagSecs float64
	_, err = pgx.ForEachRow(rows, []any{&st.Name, &st.Partition, &st.Partitions, &tx, &st.Checkpoint.Seq,
		&st.Owner, &st.LeaseUntil, &st.State, &st.LastError, &st.EventsHandled, &st.UpdatedAt, &st.Lag, &lagSecs, &st.DeadLetters}, func() error {
		st.Checkpoint.TxID = uint64(tx)
		st.LagTime = time.Duration(lagSecs * float64(time.Second))
		if st.Lag == 0 {
			st.LagTime = 0
		}
		out = append(out, st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: subscription status: %w", err)
	}
	return out, nil
}

// ResetSubscription moves every partition of a subscription back (or
// forward) to position to — the zero Position replays the whole log — and
// drops its dead letters after that position. If fn is not nil it runs in
// the same transaction first (to clear a read model, say). Processes
// running the subscription notice at their next batch (its checkpoint
// update is fenced on the checkpoint they read) and continue from to.
func (s *Store) ResetSubscription(ctx context.Context, name string, to Position, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if err := errors.Join(checkNames("reset subscription", name), checkPosition("reset subscription", to)); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if fn != nil {
			if err := fn(ctx, tx); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE `+s.schema+`.subscriptions
			SET position_tx = $2, position_seq = $3, resets = resets + 1, last_error = NULL,
			    state = CASE WHEN owner IS NULL THEN 'idle' ELSE 'running' END, updated_at = now()
			WHERE name = $1`, name, int64(to.TxID), to.Seq)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("no subscription named %q", name)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.schema+`.dead_letters
			WHERE subscription = $1 AND (position_tx, position_seq) > ($2, $3)`, name, int64(to.TxID), to.Seq); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("eventstore: reset subscription %q: %w", name, err)
	}
	return nil
}

// DeleteSubscription removes a subscription's checkpoints, members and dead
// letters. Running processes stop handling it at their next batch.
func (s *Store) DeleteSubscription(ctx context.Context, name string) error {
	if err := checkNames("delete subscription", name); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`DELETE FROM ` + s.schema + `.subscriptions WHERE name = $1`,
			`DELETE FROM ` + s.schema + `.subscription_members WHERE name = $1`,
			`DELETE FROM ` + s.schema + `.dead_letters WHERE subscription = $1`,
		} {
			if _, err := tx.Exec(ctx, q, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("eventstore: delete subscription %q: %w", name, err)
	}
	return nil
}

// DeadLetter is an event a subscription parked.
type DeadLetter struct {
	// ID identifies the dead letter.
	ID int64
	// Subscription and Partition say whose it is.
	Subscription string
	// Partition is the subscription partition it belongs to.
	Partition int
	// Position is the event's log position.
	Position Position
	// EventID, StreamID and Type identify the event.
	EventID uuid.UUID
	// StreamID is the event's stream.
	StreamID string
	// Type is the event's type.
	Type string
	// Error is the handler's last error, or a note that the event is
	// parked behind BlockedBy.
	Error string
	// Attempts is how many times the handler was run on it.
	Attempts int
	// BlockedBy is the ID of the stream's first dead letter when this one
	// was parked only to keep the stream in order (0 otherwise).
	BlockedBy int64
	// RetryRequested says a retry is pending.
	RetryRequested bool
	// ParkedAt is when it was parked.
	ParkedAt time.Time
}

// DeadLetters lists dead letters in the order they were parked; subscription
// "" lists every subscription's.
func (s *Store) DeadLetters(ctx context.Context, subscription string) ([]DeadLetter, error) {
	if err := checkNames("dead letters", subscription); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT id, subscription, partition, position_tx, position_seq, event_id, stream_id,
			event_type, error, attempts, coalesce(blocked_by, 0), retry_requested, parked_at
		FROM `+s.schema+`.dead_letters WHERE $1 = '' OR subscription = $1 ORDER BY id`, subscription)
	if err != nil {
		return nil, fmt.Errorf("eventstore: dead letters: %w", err)
	}
	var out []DeadLetter
	var d DeadLetter
	var tx int64
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Subscription, &d.Partition, &tx, &d.Position.Seq, &d.EventID, &d.StreamID,
		&d.Type, &d.Error, &d.Attempts, &d.BlockedBy, &d.RetryRequested, &d.ParkedAt}, func() error {
		d.Position.TxID = uint64(tx)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: dead letters: %w", err)
	}
	return out, nil
}

// RetryDeadLetters asks the processes running a subscription to run its
// dead letters again, each stream's in order (streamID "" for all streams).
// It returns how many were marked. A retried event that succeeds leaves
// the dead letters; one that fails again stays, with its attempts counted.
func (s *Store) RetryDeadLetters(ctx context.Context, subscription, streamID string) (int64, error) {
	if err := checkNames("retry dead letters", subscription, streamID); err != nil {
		return 0, err
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+s.schema+`.dead_letters SET retry_requested = true
			WHERE subscription = $1 AND ($2 = '' OR stream_id = $2)`, subscription, streamID)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return s.notify(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("eventstore: retry dead letters of %q: %w", subscription, err)
	}
	return n, nil
}

// ReadLast returns the last limit events of the log that f selects and a
// gap-safe reader can see, in log order. Page.Next is the position of the
// last event such a reader can see, whether f selects it or not: reading
// on from it with ReadAll or ReadAllFiltered continues exactly after the
// events returned, skipping nothing. This is how a tail that follows the
// log starts.
func (s *Store) ReadLast(ctx context.Context, limit int, f Filter) (Page, error) {
	if err := checkLimit("read last", limit); err != nil {
		return Page{}, err
	}
	if err := f.check(); err != nil {
		return Page{}, err
	}
	// The gap-safe read of the log (queries.logSelect) walked backwards: the same
	// horizon (below the snapshot's xmin), events_log_idx read from its
	// end. Both statements run in one repeatable-read snapshot, so they
	// share the horizon and Next cannot pass an event the first missed.
	var b strings.Builder
	b.WriteString(`SELECT ` + eventColumns + ` FROM ` + s.schema + `.events
		WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint`)
	args := filterSQL(&b, []any{limit}, f)
	b.WriteString(" ORDER BY transaction_id DESC, position DESC LIMIT $1")
	var page Page
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if page.Events, err = collect(ctx, tx, b.String(), args...); err != nil {
			return err
		}
		var txID, pos int64
		err = tx.QueryRow(ctx, `SELECT transaction_id, position FROM `+s.schema+`.events
			WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
			ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&txID, &pos)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		page.Next = Position{TxID: uint64(txID), Seq: pos}
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("eventstore: read last %d: %w", limit, err)
	}
	slices.Reverse(page.Events)
	return page, nil
}

// ReadCorrelated returns up to limit events whose Metadata.CorrelationID
// is correlationID — everything one request caused — in log order. It
// reads every committed event (no gap-safe horizon: this is for looking,
// not for following the log).
func (s *Store) ReadCorrelated(ctx context.Context, correlationID string, limit int) ([]Event, error) {
	if err := checkLimit(fmt.Sprintf("read correlation %q", correlationID), limit); err != nil {
		return nil, err
	}
	if !validText(correlationID) {
		return nil, fmt.Errorf("%w: read correlation %q: not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, correlationID)
	}
	// Index: events_correlation_idx (partial, on correlation_id).
	events, err := collect(ctx, s.pool, `SELECT `+eventColumns+` FROM `+s.schema+`.events
		WHERE correlation_id = $1 ORDER BY transaction_id, position LIMIT $2`, correlationID, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read correlation %q: %w", correlationID, err)
	}
	return events, nil
}

// collect runs a query selecting eventColumns and returns its events.
func collect(ctx context.Context, q querier, sql string, args ...any) ([]Event, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	var sc eventScanner
	for rows.Next() {
		e, err := sc.scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

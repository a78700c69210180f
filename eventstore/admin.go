package eventstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtx"
)

// adminTx are the options of the administrative transactions (and
// ReadLast's snapshot) that run no caller code: besides the server process
// of a lost connection being ended, the server ends one whose client went
// silent for 10 s between two statements (it needs microseconds), even if
// this process is gone too.
var adminTx = pgtx.Options{IdleTimeout: 10 * time.Second}

// Head describes the end of the log.
type Head struct {
	// Position is the last committed event's position in log order
	// (zero when the log is empty).
	Position Position
	// Events is the number of events in the log: counted up to
	// HeadCountLimit, estimated beyond (see Estimated).
	Events int64
	// Streams is the number of streams: counted up to HeadCountLimit,
	// estimated beyond (see Estimated).
	Streams int64
	// Estimated says Events or Streams passed HeadCountLimit and are the
	// planner's estimates (pg_class.reltuples, as of the table's last
	// ANALYZE), at least HeadCountLimit.
	Estimated bool
	// RecordedAt is when the last event was recorded.
	RecordedAt time.Time
}

// HeadCountLimit is how many events and streams Head counts, at most: a
// probe of the head costs the same at any size of the log.
const HeadCountLimit = 10_000

// Head returns the end of the log: every committed event, including those
// a gap-safe reader cannot see yet. Its cost is bounded at any size of the
// log (see HeadCountLimit).
func (s *Store) Head(ctx context.Context) (Head, error) {
	var h Head
	var tx, seq *int64
	var at *time.Time
	var estEvents, estStreams float64
	// Index: events_log_idx, read backwards once for the last entry.
	err := s.pool.QueryRow(ctx, `SELECT last.transaction_id, last.position, last.recorded_at,
			(SELECT count(*) FROM (SELECT FROM `+s.schema+`.events LIMIT $1) e),
			(SELECT count(*) FROM (SELECT FROM `+s.schema+`.streams LIMIT $1) s),
			coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass($2)), 0)::float8,
			coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass($3)), 0)::float8
		FROM (SELECT 1) one
		LEFT JOIN LATERAL (SELECT transaction_id, position, recorded_at FROM `+s.schema+`.events
			ORDER BY transaction_id DESC, position DESC LIMIT 1) last ON true`,
		HeadCountLimit, s.schema+".events", s.schema+".streams").Scan(&tx, &seq, &at, &h.Events, &h.Streams, &estEvents, &estStreams)
	if err != nil {
		return Head{}, fmt.Errorf("eventstore: head: %w", err)
	}
	if h.Events >= HeadCountLimit {
		h.Events, h.Estimated = max(h.Events, int64(estEvents)), true
	}
	if h.Streams >= HeadCountLimit {
		h.Streams, h.Estimated = max(h.Streams, int64(estStreams)), true
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
	// PID is the backend's process ID (pg_terminate_backend takes it); 0
	// when Hidden.
	PID int
	// Database is the backend's database.
	Database string
	// ApplicationName is the client's application_name.
	ApplicationName string
	// State is the backend's state, such as "idle in transaction".
	State string
	// Age is how long its transaction has been open. When Hidden, it is
	// how long readers are known to have been held back: since this Store
	// first saw the horizon where it is, or since the oldest event it
	// holds back was recorded, whichever is longer.
	Age time.Duration
	// Query is the backend's latest statement, cut to 200 characters.
	Query string
	// Hidden says the holder's session is not visible to this role (it
	// belongs to another role and this one lacks pg_read_all_stats): the
	// horizon is reported as the role sees it, without PID, Database,
	// ApplicationName, State and Query.
	Hidden bool
	// Xmin is the transaction ID holding the horizon (when Hidden; else 0).
	Xmin uint64
	// Behind is how many transaction IDs were assigned since Xmin (when
	// Hidden; else 0): how much committed work readers cannot see yet.
	Behind int64
}

// horizonSeen remembers the horizon's transaction ID and when this Store
// first saw it there, so that a role that cannot see other roles'
// sessions can still tell how long the horizon has been stuck.
type horizonSeen struct {
	mu    sync.Mutex
	xmin  uint64
	since time.Time
}

// stuckFor records xmin and returns how long it has been the horizon, as
// far as this Store has seen.
func (h *horizonSeen) stuckFor(xmin uint64, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.xmin != xmin || h.since.IsZero() {
		h.xmin, h.since = xmin, now
	}
	return now.Sub(h.since)
}

// Horizon returns the oldest transaction holding back gap-safe readers, or
// nil when none has done so for minAge. With the pg_read_all_stats role
// (or as the holder's own role) it names the backend; otherwise, as the
// least-privilege role sees it, the holder is Hidden and reported by its
// transaction ID, how far behind it keeps readers, and for how long.
func (s *Store) Horizon(ctx context.Context, minAge time.Duration) (*HorizonHolder, error) {
	var h HorizonHolder
	var secs float64
	var db, app, state, query *string
	var xid, snapXmin int64
	err := s.pool.QueryRow(ctx, `SELECT pid, datname, application_name, state,
			extract(epoch FROM now() - xact_start)::float8, left(query, 200),
			backend_xid::text::bigint, pg_snapshot_xmin(pg_current_snapshot())::text::bigint
		FROM pg_stat_activity
		WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
		  AND xact_start <= now() - make_interval(secs => $1)
		ORDER BY age(backend_xid) DESC LIMIT 1`, minAge.Seconds()).Scan(&h.PID, &db, &app, &state, &secs, &query, &xid, &snapXmin)
	if err == nil && xid%(1<<32) > snapXmin%(1<<32) {
		// The oldest transaction this role can see is not the horizon:
		// an older one is hidden from it.
		err = pgx.ErrNoRows
	}
	if err == nil {
		h.Database, h.ApplicationName, h.State, h.Query = deref(db), deref(app), deref(state), deref(query)
		h.Age = time.Duration(secs * float64(time.Second))
		return &h, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("eventstore: horizon: %w", err)
	}
	// What every role sees: its snapshot's horizon (the oldest running
	// transaction ID in the cluster) and the next ID, and the oldest event
	// of this log the horizon holds back (events_log_idx, one entry).
	var xmin, xmax int64
	var oldest *time.Time
	var now time.Time
	err = s.pool.QueryRow(ctx, `SELECT x.xmin, x.xmax, now(),
			(SELECT recorded_at FROM `+s.schema+`.events WHERE transaction_id >= x.xmin ORDER BY transaction_id, position LIMIT 1)
		FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
		             pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax) x`).Scan(&xmin, &xmax, &now, &oldest)
	if err != nil {
		return nil, fmt.Errorf("eventstore: horizon: %w", err)
	}
	if xmin >= xmax {
		return nil, nil // no transaction holds an ID
	}
	age := s.shared.horizon.stuckFor(uint64(xmin), time.Now())
	if oldest != nil {
		age = max(age, now.Sub(*oldest))
	}
	if age < minAge || age <= 0 {
		return nil, nil
	}
	return &HorizonHolder{Hidden: true, Xmin: uint64(xmin), Behind: xmax - xmin, Age: age}, nil
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
	// partition) committed after the checkpoint, counted up to a limit
	// (see SubscriptionStatuses and ProbeSubscription).
	Lag int64
	// LagCapped says the count of Lag stopped at its limit: the partition
	// is at least that far behind.
	LagCapped bool
	// LagTime is how long ago the oldest of those events was recorded
	// (zero when Lag is 0).
	LagTime time.Duration
	// DeadLetters counts the partition's dead letters.
	DeadLetters int64
	// UpdatedAt is the last change to the row (a batch, a claim, a state).
	UpdatedAt time.Time
}

// SubscriptionStatuses returns every subscription partition's status,
// ordered by name and partition. name "" means all subscriptions. Each
// partition's lag is counted up to 1,000,000 events (LagCapped beyond):
// for operators and rebuilds. Health checks and metrics use
// ProbeSubscription, whose cost is bounded by a much smaller limit.
func (s *Store) SubscriptionStatuses(ctx context.Context, name string) ([]SubscriptionStatus, error) {
	if err := checkNames("subscription status", name); err != nil {
		return nil, err
	}
	// Lag counts with the subscription's own filter, through
	// events_log_idx from the checkpoint, capped so a far-behind
	// subscription costs a bounded scan.
	return s.subscriptionStatuses(ctx, `SELECT count(*) AS n, min(recorded_at) AS oldest, count(*) >= $2 AS capped FROM (
				SELECT e.recorded_at FROM `+s.schema+`.events e
				WHERE (e.transaction_id, e.position) > (s.position_tx, s.position_seq)
				  AND `+statusFilter+`
				LIMIT $2) x`, name, "", statusesMaxLag)
}

// statusesMaxLag is the most events SubscriptionStatuses counts per
// partition.
const statusesMaxLag = 1_000_000

// statusFilter selects the events of a subscription partition s.
const statusFilter = `(cardinality(s.categories) = 0 OR e.category = ANY(s.categories))
				  AND (cardinality(s.event_types) = 0 OR e.event_type = ANY(s.event_types))
				  AND (s.partitions = 1 OR ` + "%PARTITION%" + ` = s.partition)`

// ProbeOptions bound what ProbeSubscription looks at.
type ProbeOptions struct {
	// Owner keeps only the partitions whose lease this owner holds; ""
	// keeps all.
	Owner string
	// MaxLag is how many entries of the log after each checkpoint are
	// examined, at most, to count the lag: a partition further behind
	// reports the events its filter selects among them, with LagCapped
	// set. Default 10,000.
	MaxLag int64
}

// ProbeSubscription is SubscriptionStatuses for one subscription (name)
// at a cost bounded at any size of the log and any distance behind it,
// for health checks and metrics: each partition's lag is counted over at
// most opts.MaxLag entries of the log after its checkpoint (through
// events_log_idx), and LagTime is the age of the oldest of those its
// filter selects.
func (s *Store) ProbeSubscription(ctx context.Context, name string, opts ProbeOptions) ([]SubscriptionStatus, error) {
	if opts.MaxLag <= 0 {
		opts.MaxLag = 10_000
	}
	return s.subscriptionStatuses(ctx, `SELECT count(*) FILTER (WHERE x.match) AS n, min(recorded_at) FILTER (WHERE x.match) AS oldest,
				count(*) >= $2 AS capped FROM (
				SELECT e.recorded_at, `+statusFilter+` AS match FROM `+s.schema+`.events e
				WHERE (e.transaction_id, e.position) > (s.position_tx, s.position_seq)
				ORDER BY e.transaction_id, e.position
				LIMIT $2) x`, name, opts.Owner, opts.MaxLag)
}

// subscriptionStatuses reads the partitions of subscription name ("":
// all) held by owner ("": any), their lag counted by the lateral query
// lagSQL (columns n, oldest, capped; $2 its limit).
func (s *Store) subscriptionStatuses(ctx context.Context, lagSQL, name, owner string, limit int64) ([]SubscriptionStatus, error) {
	lagSQL = strings.ReplaceAll(lagSQL, "%PARTITION%", partitionExpr("s.partitions"))
	rows, err := s.pool.Query(ctx, `SELECT s.name, s.partition, s.partitions, s.position_tx, s.position_seq,
			coalesce(s.owner, ''), coalesce(s.lease_until, 'epoch'), s.state, coalesce(s.last_error, ''), s.events_handled, s.updated_at,
			lag.n, coalesce(extract(epoch FROM now() - lag.oldest), 0)::float8, lag.capped,
			(SELECT count(*) FROM `+s.schema+`.dead_letters d WHERE d.subscription = s.name AND d.partition = s.partition)
		FROM `+s.schema+`.subscriptions s
		CROSS JOIN LATERAL (`+lagSQL+`) lag
		WHERE ($1 = '' OR s.name = $1) AND ($3 = '' OR s.owner = $3)
		ORDER BY s.name, s.partition`, name, limit, owner)
	if err != nil {
		return nil, fmt.Errorf("eventstore: subscription status: %w", err)
	}
	var out []SubscriptionStatus
	var st SubscriptionStatus
	var tx int64
	var lagSecs float64
	_, err = pgx.ForEachRow(rows, []any{&st.Name, &st.Partition, &st.Partitions, &tx, &st.Checkpoint.Seq,
		&st.Owner, &st.LeaseUntil, &st.State, &st.LastError, &st.EventsHandled, &st.UpdatedAt, &st.Lag, &lagSecs, &st.LagCapped, &st.DeadLetters}, func() error {
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

// ErrPastHead is matched (errors.Is) by the *PastHeadError of a reset to a
// position past the end of the log.
var ErrPastHead = errors.New("eventstore: position past the head of the log")

// PastHeadError reports a reset to a position after the last committed
// event: the events appended until the log reached it would be skipped
// without a word. Nothing was changed.
type PastHeadError struct {
	// Subscription is the subscription that was to be reset.
	Subscription string
	// Position is the position asked for.
	Position Position
	// Head is the position of the last committed event (zero: the log is
	// empty).
	Head Position
}

func (e *PastHeadError) Error() string {
	return fmt.Sprintf("eventstore: reset subscription %q to %s: past the head of the log (last event at %s)", e.Subscription, e.Position, e.Head)
}

// Is makes errors.Is(err, ErrPastHead) true.
func (e *PastHeadError) Is(target error) bool { return target == ErrPastHead }

// ResetSubscription moves every partition of a subscription back (or
// forward) to position to — the zero Position replays the whole log — and
// drops its dead letters after that position. A position past the last
// committed event is refused with a *PastHeadError (ErrPastHead).
//
// If fn is not nil it runs in the same transaction (to clear a read model,
// say), after the subscription's rows are locked and its checkpoints moved:
// a batch in flight has then either committed before fn runs (fn sees and
// clears its writes, with DELETE as well as with TRUNCATE) or is fenced
// and rolls back. Processes running the subscription notice at their next
// batch and continue from to.
func (s *Store) ResetSubscription(ctx context.Context, name string, to Position, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if err := errors.Join(checkNames("reset subscription", name), checkPosition("reset subscription", to)); err != nil {
		return err
	}
	var past *PastHeadError
	// fn is the caller's code: no idle timeout (see internal/pgtx).
	err := pgtx.Run(ctx, s.pool, pgtx.Options{}, func(tx pgx.Tx) error {
		if !to.IsZero() {
			var head Position
			var htx int64
			err := tx.QueryRow(ctx, `SELECT transaction_id, position FROM `+s.schema+`.events
				ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&htx, &head.Seq)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			head.TxID = uint64(htx)
			if head.Less(to) {
				past = &PastHeadError{Subscription: name, Position: to, Head: head}
				return past
			}
		}
		// First the rows: this waits for the partitions' batches in flight
		// (each holds its row from its first statement) and fences the
		// later ones, before fn clears anything.
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
		if fn != nil {
			if err := fn(ctx, tx); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.schema+`.dead_letters
			WHERE subscription = $1 AND (position_tx, position_seq) > ($2, $3)`, name, int64(to.TxID), to.Seq); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if past != nil {
		return past
	}
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
	err := pgtx.Run(ctx, s.pool, adminTx, func(tx pgx.Tx) error {
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
	err := pgtx.Run(ctx, s.pool, adminTx, func(tx pgx.Tx) error {
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
	snapshot := adminTx
	snapshot.IsoLevel, snapshot.AccessMode = pgx.RepeatableRead, pgx.ReadOnly
	err := pgtx.Run(ctx, s.pool, snapshot, func(tx pgx.Tx) error {
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

package eventstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

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

// headSQL reads the last entry of the log, the events and streams counted
// up to $1, and the planner's estimates of both tables' sizes ($2 the
// schema's name, unquoted). Index: events_log_idx, read backwards once
// for the last entry; the counts stop at $1 rows whatever the plan.
const headSQL = `SELECT last.transaction_id, last.position, last.recorded_at,
		(SELECT count(*) FROM (SELECT FROM {schema}.events LIMIT $1) e),
		(SELECT count(*) FROM (SELECT FROM {schema}.streams LIMIT $1) s),
		coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass(format('%I.events', $2::text))), 0)::float8,
		coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass(format('%I.streams', $2::text))), 0)::float8
	FROM (SELECT 1) one
	LEFT JOIN LATERAL (SELECT transaction_id, position, recorded_at FROM {schema}.events
		ORDER BY transaction_id DESC, position DESC LIMIT 1) last ON true`

// Head returns the end of the log: every committed event, including those
// a gap-safe reader cannot see yet. Its cost is bounded at any size of the
// log (see HeadCountLimit).
func (s *Store) Head(ctx context.Context) (Head, error) {
	var h Head
	var tx, seq *int64
	var at *time.Time
	var estEvents, estStreams float64
	err := s.pool.QueryRow(ctx, s.sql.admin.head, HeadCountLimit, s.cfg.Schema).
		Scan(&tx, &seq, &at, &h.Events, &h.Streams, &estEvents, &estStreams)
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

// horizonHolderSQL reads the oldest transaction holding an ID that this
// role can see and that has been open for $1 seconds, with the horizon of
// this statement's snapshot to tell whether it is the one holding it.
const horizonHolderSQL = `SELECT pid, datname, application_name, state,
		extract(epoch FROM now() - xact_start)::float8, left(query, 200),
		backend_xid::text::bigint, pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	FROM pg_stat_activity
	WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
	  AND xact_start <= now() - make_interval(secs => $1)
	ORDER BY age(backend_xid) DESC LIMIT 1`

// horizonSQL is what every role sees: its snapshot's horizon (the oldest
// running transaction ID in the cluster) and the next ID, and the oldest
// event of this log the horizon holds back (events_log_idx, one entry).
const horizonSQL = `SELECT x.xmin, x.xmax, now(),
		(SELECT recorded_at FROM {schema}.events WHERE transaction_id >= x.xmin ORDER BY transaction_id, position LIMIT 1)
	FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
	             pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax) x`

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
	err := s.pool.QueryRow(ctx, horizonHolderSQL, minAge.Seconds()).Scan(&h.PID, &db, &app, &state, &secs, &query, &xid, &snapXmin)
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
	var xmin, xmax int64
	var oldest *time.Time
	var now time.Time
	err = s.pool.QueryRow(ctx, s.sql.admin.horizon).Scan(&xmin, &xmax, &now, &oldest)
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

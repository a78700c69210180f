package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

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
	// released), or "open" or "half-open" while the owner's circuit
	// breaker is (see BreakerConfig).
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

// statusColumns are the columns of a subscription partition's status but
// its dead letters' count, in the order subscriptionStatuses scans them
// ({status_columns}): the partition's row (s) and its lag from the
// statement's lateral subquery (lag: n, oldest, capped).
const statusColumns = `s.name, s.partition, s.partitions, s.position_tx, s.position_seq,
		coalesce(s.owner, ''), coalesce(s.lease_until, 'epoch'), s.state, coalesce(s.last_error, ''), s.events_handled, s.updated_at,
		lag.n, coalesce(extract(epoch FROM now() - lag.oldest), 0)::float8, lag.capped`

// subscriptionStatusesSQL reads the partitions of subscription $1 (NULL:
// all), each with its lag: the events its own filter and partition select
// after its checkpoint, counted up to $2 so a far-behind partition costs a
// bounded scan. Index: events_log_idx, a range scan from the checkpoint;
// dead_letters_partition_idx for the dead letters.
const subscriptionStatusesSQL = `SELECT {status_columns},
		(SELECT count(*) FROM {schema}.dead_letters d WHERE d.subscription = s.name AND d.partition = s.partition)
	FROM {schema}.subscriptions s
	CROSS JOIN LATERAL (
		SELECT count(*) AS n, min(recorded_at) AS oldest, count(*) >= $2 AS capped FROM (
			SELECT e.recorded_at FROM {schema}.events e
			WHERE (e.transaction_id, e.position) > (s.position_tx, s.position_seq)
			  AND (cardinality(s.categories) = 0 OR e.category = ANY(s.categories))
			  AND (cardinality(s.event_types) = 0 OR e.event_type = ANY(s.event_types))
			  AND (s.partitions = 1 OR ((hashtext(e.stream_id)::bigint & 2147483647) % s.partitions) = s.partition)
			LIMIT $2) x) lag
	WHERE ($1::text IS NULL OR s.name = $1)
	ORDER BY s.name, s.partition`

// SubscriptionStatuses returns every subscription partition's status,
// ordered by name and partition. name "" means all subscriptions. Each
// partition's lag is counted up to 1,000,000 events (LagCapped beyond):
// for operators and rebuilds. Health checks and metrics use
// ProbeSubscription, whose cost is bounded by a much smaller limit.
func (s *Store) SubscriptionStatuses(ctx context.Context, name string) ([]SubscriptionStatus, error) {
	if err := checkNames("subscription status", name); err != nil {
		return nil, err
	}
	return s.subscriptionStatuses(ctx, s.sql.admin.statuses, orNull(name), statusesMaxLag)
}

// statusesMaxLag is the most events SubscriptionStatuses counts per
// partition.
const statusesMaxLag = 1_000_000

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

// probeSubscriptionSQL is subscriptionStatusesSQL bounded by the log
// rather than by the matches: each partition's lag is counted over the
// first $2 entries of the log after its checkpoint, in log order (an
// index range scan of events_log_idx that stops after $2 entries, however
// few of them the filter selects), and only the partitions owned by $3
// (NULL: any) are read.
const probeSubscriptionSQL = `SELECT {status_columns},
		(SELECT count(*) FROM {schema}.dead_letters d WHERE d.subscription = s.name AND d.partition = s.partition)
	FROM {schema}.subscriptions s
	CROSS JOIN LATERAL (
		SELECT count(*) FILTER (WHERE x.match) AS n, min(recorded_at) FILTER (WHERE x.match) AS oldest,
			count(*) >= $2 AS capped FROM (
			SELECT e.recorded_at,
				(cardinality(s.categories) = 0 OR e.category = ANY(s.categories))
				AND (cardinality(s.event_types) = 0 OR e.event_type = ANY(s.event_types))
				AND (s.partitions = 1 OR ((hashtext(e.stream_id)::bigint & 2147483647) % s.partitions) = s.partition) AS match
			FROM {schema}.events e
			WHERE (e.transaction_id, e.position) > (s.position_tx, s.position_seq)
			ORDER BY e.transaction_id, e.position
			LIMIT $2) x) lag
	WHERE ($1::text IS NULL OR s.name = $1) AND ($3::text IS NULL OR s.owner = $3)
	ORDER BY s.name, s.partition`

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
	return s.subscriptionStatuses(ctx, s.sql.admin.probe, orNull(name), opts.MaxLag, orNull(opts.Owner))
}

// subscriptionStatuses runs sql, subscriptionStatusesSQL or
// probeSubscriptionSQL, with args, and reads the partitions it returns.
func (s *Store) subscriptionStatuses(ctx context.Context, sql string, args ...any) ([]SubscriptionStatus, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
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

// orNull sends an empty string as NULL: a condition the statement skips.
func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

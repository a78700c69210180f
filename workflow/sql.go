package workflow

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/sqltext"
	"github.com/strata-go/strata/internal/storeview"
)

// queries holds the SQL of the tables this package owns,
// workflow_instances and workflow_deadlines (migration 0020), with the
// schema filled in.
type queries struct {
	tryLock, instanceStatus, upsertInstance                                                             string
	cancel, cancelAll, schedule, notify                                                                 string
	nextDue, dueCandidates, claimDeadline, failDeadline, retryDeadlines                                 string
	inboxInsert, inboxScan, inboxRows, inboxDelete, inboxFail, inboxRetry, inboxNextRetry, inboxPending string
}

func buildQueries(schema string) queries {
	r := sqltext.Expander(schema)
	return queries{
		// An instance's lock: a transaction-scoped advisory lock on the
		// pair (hash of the schema and the workflow's name, hash of the
		// key), taken before anything of the instance is read, without
		// waiting (an instance another transaction holds is passed over,
		// as SKIP LOCKED passes over rows). Every writer of an instance's
		// stream, row, inputs and deadlines holds it, so one instance never
		// has two reactions at once. A collision of hashes only makes two
		// instances take turns.
		tryLock: `SELECT pg_try_advisory_xact_lock($1::int4, $2::int4)`,
		instanceStatus: r.Replace(`SELECT status FROM {schema}.workflow_instances
			WHERE workflow = $1 AND instance_key = $2`),
		upsertInstance: r.Replace(`INSERT INTO {schema}.workflow_instances (workflow, instance_key, status, version, correlation_id)
			VALUES ($1, $2, $3, $4, NULLIF($5, ''))
			ON CONFLICT (workflow, instance_key) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version, updated_at = now()`),
		cancel: r.Replace(`DELETE FROM {schema}.workflow_deadlines
			WHERE workflow = $1 AND instance_key = $2 AND name = ANY($3::text[])`),
		cancelAll: r.Replace(`DELETE FROM {schema}.workflow_deadlines WHERE workflow = $1 AND instance_key = $2`),
		// Scheduling a name again moves the deadline and forgets its
		// failures.
		schedule: r.Replace(`INSERT INTO {schema}.workflow_deadlines (workflow, instance_key, name, due_at)
			SELECT $1, $2, n, d FROM unnest($3::text[], $4::timestamptz[]) AS s(n, d)
			ON CONFLICT (workflow, instance_key, name) DO UPDATE
			SET due_at = EXCLUDED.due_at, attempts = 0, retry_at = NULL, failed = false, last_error = NULL`),
		// Sent in a reaction that schedules: delivered at its commit.
		notify: `SELECT pg_notify($1, $2)`,
		// When the worker must look next: the earliest due (or retry) time
		// of the workflow's live deadlines. greatest ignores a NULL retry_at.
		nextDue: r.Replace(`SELECT min(greatest(due_at, retry_at)) FROM {schema}.workflow_deadlines
			WHERE workflow = $1 AND NOT failed`),
		// The due deadlines in due order, on workflow_deadlines_due_idx.
		dueCandidates: r.Replace(`SELECT id, instance_key, name, due_at FROM {schema}.workflow_deadlines
			WHERE workflow = $1 AND due_at <= $2 AND NOT failed AND (retry_at IS NULL OR retry_at <= $2)
			ORDER BY due_at, id LIMIT $3`),
		// Under the instance's lock: the deadline is still there and due
		// (not fired by another process, cancelled or moved meanwhile). Its
		// removal commits with the reaction to it.
		claimDeadline: r.Replace(`DELETE FROM {schema}.workflow_deadlines
			WHERE id = $1 AND due_at <= $2 AND NOT failed AND (retry_at IS NULL OR retry_at <= $2)
			RETURNING name, due_at`),
		failDeadline: r.Replace(`UPDATE {schema}.workflow_deadlines
			SET attempts = attempts + 1, last_error = $3, failed = attempts + 1 >= $5,
			    retry_at = $4::timestamptz + make_interval(secs => least($6 * power(2, least(attempts, 30)), $7))
			WHERE id = $1 AND workflow = $2 RETURNING attempts, failed`),
		// The router's copy of a batch's routed events, in log order (the
		// identity follows ord).
		inboxInsert: r.Replace(`INSERT INTO {schema}.workflow_inbox (workflow, instance_key, event_id, stream_id, version,
				position_tx, position_seq, event_type, schema_version, data, metadata, recorded_at)
			SELECT $1, k, i::uuid, s, v, ptx, pseq, t, sv, d::json, m::json, ra
			FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[],
				$9::int[], $10::text[], $11::text[], $12::timestamptz[])
				WITH ORDINALITY AS u(k, i, s, v, ptx, pseq, t, sv, d, m, ra, ord)
			ORDER BY ord`),
		// The instances with inputs, oldest input first, on
		// workflow_inbox_order_idx; inputs queued behind a parked or
		// waiting one of their instance are passed over, so that they
		// cannot fill the scan's window.
		inboxScan: r.Replace(`SELECT i.instance_key FROM {schema}.workflow_inbox i
			WHERE i.workflow = $1 AND NOT i.failed AND (i.retry_at IS NULL OR i.retry_at <= $2)
			  AND NOT EXISTS (SELECT 1 FROM {schema}.workflow_inbox f
				WHERE f.workflow = i.workflow AND f.instance_key = i.instance_key AND f.id < i.id
				  AND (f.failed OR f.retry_at > $2))
			ORDER BY i.id LIMIT $3`),
		// Under the instance's lock, before a deadline fires: inputs
		// already routed to it come first.
		inboxPending: r.Replace(`SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed)
			FROM {schema}.workflow_inbox WHERE workflow = $1 AND instance_key = $2`),
		// Under the instance's lock: its inputs in log order, on
		// workflow_inbox_instance_idx.
		inboxRows: r.Replace(`SELECT id, event_id, stream_id, version, position_tx, position_seq, event_type, schema_version,
				data::text, metadata::text, recorded_at, failed, retry_at
			FROM {schema}.workflow_inbox WHERE workflow = $1 AND instance_key = $2 ORDER BY id LIMIT $3`),
		inboxDelete: r.Replace(`DELETE FROM {schema}.workflow_inbox WHERE workflow = $1 AND id = ANY($2::bigint[])`),
		// A failed attempt: the next one after a backoff doubling from $6
		// up to $7 seconds, parked after $5 attempts.
		inboxFail: r.Replace(`UPDATE {schema}.workflow_inbox
			SET attempts = attempts + 1, last_error = $3, failed = attempts + 1 >= $5,
			    retry_at = $4::timestamptz + make_interval(secs => least($6 * power(2, least(attempts, 30)), $7))
			WHERE id = $1 AND workflow = $2 RETURNING attempts, failed`),
		inboxRetry: r.Replace(`UPDATE {schema}.workflow_inbox SET attempts = 0, retry_at = NULL, failed = false, last_error = NULL
			WHERE workflow = $1 AND failed`),
		inboxNextRetry: r.Replace(`SELECT min(retry_at) FROM {schema}.workflow_inbox WHERE workflow = $1 AND NOT failed`),
		retryDeadlines: r.Replace(`UPDATE {schema}.workflow_deadlines
			SET attempts = 0, retry_at = NULL, failed = false, last_error = NULL
			WHERE workflow = $1 AND failed`),
	}
}

// lockKey is the advisory lock pair of an instance. Advisory locks are
// database-wide: the schema is part of the pair, so that the same
// workflow in two schemas of one database does not contend.
func lockKey(schema, workflow, key string) (int32, int32) {
	return hash32(schema + "\x00" + workflow), hash32(key)
}

// tryLock takes the transaction advisory lock of the instance key in tx,
// without waiting: false when another transaction holds it.
func (r *Runner[S]) tryLock(ctx context.Context, tx pgx.Tx, key string) (bool, error) {
	a, b := lockKey(storeview.Of(r.store).Schema, r.wf.Name, key)
	var locked bool
	err := tx.QueryRow(ctx, r.sql.tryLock, a, b).Scan(&locked)
	return locked, err
}

func hash32(s string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return int32(h.Sum32())
}

// channel is the LISTEN/NOTIFY channel that wakes the deadline workers of
// a schema, within Postgres' 63 bytes.
func channel(schema string) string {
	if ch := "strata_workflows_" + schema; len(ch) <= 63 {
		return ch
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(schema))
	return fmt.Sprintf("strata_workflows_%016x", h.Sum64())
}

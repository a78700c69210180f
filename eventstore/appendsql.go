package eventstore

import (
	"hash/fnv"
	"strings"
)

// The append statements.
//
// An append is ONE statement, so that Append costs a single round trip and
// is atomic without an explicit transaction. The CTE s moves the stream's
// row in the streams table and is where the expected version is checked:
// it returns the stream's version before the append ("base") only if the
// expectation holds, and the events are inserted by joining on it, so a
// failed check inserts nothing and the statement returns no row (one
// event) or a count of 0 (many).
// The row lock taken on the streams row serialises concurrent appenders of
// one stream until commit, which keeps versions gapless for Any; a losing
// Exactly(n) re-checks its WHERE clause on the winner's row after the lock
// is released (READ COMMITTED re-evaluation) and matches nothing.
//
// The row lock alone does not keep a stream's versions in log order. The
// log is ordered by transaction ID, and an appender may take its ID before
// it waits for the stream: the loser of a race to create a stream with Any
// took it for its own insert of the row, and an UPDATE (StreamExists)
// takes it before it looks at the row. Such an append, queued behind a
// writer with a later transaction ID, writes the next version with an
// earlier ID, so that readers of the log met version n+1 before version n.
// So Append's statements for Any and StreamExists (the lock variants)
// first take a transaction-scoped advisory lock on the stream, which needs
// no transaction ID: an append gets its ID only once the previous appender
// of the stream has committed, after that appender's ID. Exactly(n) and
// NoStream need no lock: one that waits for another writer of the stream
// fails its check once that writer commits (the version moved), and one
// that starts after it commits gets a later ID. AppendTx cannot rely
// on it (the caller's transaction may have its ID already, and one that
// appends to many streams would hold a lock table entry per stream), so
// every append also records its transaction ID in the stream's row
// (last_tx) and refuses to write, matching no row, when last_tx is later
// than its own: the row it checks is the latest committed version (an
// UPDATE re-checks its WHERE clause on it after waiting, ON CONFLICT reads
// it), not the statement's snapshot. Append retries such a refusal in a new
// transaction; AppendTx returns an *OutOfOrderError.
//
// Parameters: $1 stream, $2 event count, $3 category, $4..$10 the events'
// columns (scalars or arrays), $11 the principal (WithPrincipal; one for
// all the events), $12 the expected version for Exactly. Empty
// correlation and causation IDs and principals are stored as NULL; the
// database role (db_role) is the column's default, session_user.
//
// The 32 statements (appendShape) are made by filling {xid}, {stream} and
// {wake} of appendOneSQL or appendManySQL with the pieces below; each is
// printed whole in testdata/append_sql.golden, which a test compares.

type expectKind int

const (
	expectAny expectKind = iota
	expectNone
	expectExists
	expectExactly
)

// appendShape selects one of the append statements.
type appendShape struct {
	kind   expectKind
	multi  bool // unnest arrays instead of scalar parameters
	notify bool // carry the wake-up NOTIFY
	lock   bool // take the stream's advisory lock before writing (Append, not AppendTx)
}

const (
	// appendOneSQL appends one event: the insert's own RETURNING is the
	// result, one row or none when the expectation failed (measured: a
	// third cheaper on the server than appendManySQL's aggregate, at 16
	// writers).
	appendOneSQL = `WITH {xid},
s AS (
	{stream}{wake}
)
INSERT INTO {schema}.events (event_id, stream_id, version, category, event_type, schema_version, data, metadata, correlation_id, causation_id, principal)
SELECT $4::uuid, $1, s.base + 1, $3, $5::text, $6::int4, $7::json, $8::json, nullif($9::text, ''), nullif($10::text, ''), nullif($11::text, '')
FROM s
RETURNING 1::bigint, position, transaction_id, version`

	// appendManySQL appends many events: one row summing up the insert,
	// with a count of 0 when the expectation failed.
	appendManySQL = `WITH {xid},
s AS (
	{stream}{wake}
),
ins AS (
	INSERT INTO {schema}.events (event_id, stream_id, version, category, event_type, schema_version, data, metadata, correlation_id, causation_id, principal)
	SELECT e.id, $1, s.base + e.n, $3, e.type, e.sv, e.data, e.meta, nullif(e.corr, ''), nullif(e.caus, ''), nullif($11::text, '')
	FROM s, unnest($4::uuid[], $5::text[], $6::int4[], $7::json[], $8::json[], $9::text[], $10::text[])
		WITH ORDINALITY AS e(id, type, sv, data, meta, corr, caus, n)
	RETURNING position, transaction_id, version
)
SELECT count(*), coalesce(max(position), 0), coalesce(max(transaction_id), 0), coalesce(max(version), 0)
FROM ins`

	// {xid}: x is the transaction's ID.
	appendXidSQL = `x AS (SELECT pg_current_xact_id()::text::bigint AS xid)`
	// {xid} with the lock: x reads from the lock's CTE, so that the ID is
	// taken only once the lock is held (a pg_current_xact_id() in the
	// UPDATE's WHERE clause could run before the join with the lock).
	appendLockXidSQL = `l AS (SELECT pg_advisory_xact_lock(hashtextextended($1::text, {lock_seed}))),
x AS (SELECT pg_current_xact_id()::text::bigint AS xid FROM l)`

	// {wake}: pg_notify is queued now and delivered at commit, so
	// listeners wake only once the events are visible. It rides on the
	// stream's row, so it is only sent when the append goes ahead.
	appendWakeSQL = `, pg_notify({channel}, '') AS w`
)

// The combined append statement (combiner.go).
//
// appendBatchSQL is the appends of many callers in one statement, one
// transaction, one commit: the statement the combiner sends for a batch of
// concurrent Appends, each to a different stream. Each append keeps the
// rules of the single statements above:
//
//   - l takes the advisory lock of every stream of the batch, in the order
//     of the lock keys (a sort below the lock calls, so that two batches,
//     or a batch and a single append, never wait for each other in a
//     cycle), and x takes the transaction's ID only once they are all
//     held: every append of the batch gets its ID after the previous
//     appender of its stream committed, as the lock variants above do.
//   - Each append moves its own stream's row, in the CTE of its expected
//     version (sa: Any, sn: NoStream, su: StreamExists and Exactly), with
//     the same checks, last_tx included; an append whose check fails moves
//     nothing and, joined on the rows moved (s), inserts nothing.
//   - su finds the streams' rows through their index (stream_id = ANY($1)):
//     joined on a alone, the planner scans the whole table when it thinks
//     it small, and a small table of hot streams holds every version of
//     their rows that an open snapshot anywhere still needs.
//   - The events are inserted in the order of the batch (ORDER BY e.o), so
//     the positions of one append's events follow its versions.
//   - Once the advisory locks are held, x sets a short lock_timeout
//     (batchLockTimeout) for the rest of the statement: a stream row held
//     by a caller's transaction (AppendTx takes no advisory lock) fails the
//     statement at once instead of making every append of the batch wait
//     for it, or closing a deadlock cycle with that transaction (the batch
//     takes rows in batch order while holding the earlier ones). The
//     statement then wrote nothing, and each append runs alone, on its own
//     context, as any failed statement's appends do.
//
// The result is one row per append that went ahead (its index in the
// batch, its last version, position and transaction ID); an append with
// no row was refused by its check and is explained on its own (conflict).
// A statement that fails (a stored event ID, data the server refuses)
// writes nothing for any append of the batch: the combiner then runs each
// of them alone, so that the failure is only its own.
//
// Parameters, one element per append: $1 stream, $2 category, $3 kind
// (expectKind), $4 expected version (Exactly), $5 event count; one per
// event, in the batch's order: $6 the append's index (from 1), $7 the
// event's place in its append (from 1), $8..$14 the events' columns; one
// per append again: $15 the principal (WithPrincipal; empty: NULL).
const appendBatchSQL = `WITH a AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int8[], $15::text[])
		WITH ORDINALITY AS a(stream, category, kind, expected, n, principal, i)
),
l AS (
	SELECT count(*) AS locked FROM (
		SELECT pg_advisory_xact_lock(k.k) FROM (SELECT DISTINCT hashtextextended(a.stream, {lock_seed}) AS k FROM a ORDER BY 1) k
	) held
),
x AS (SELECT pg_current_xact_id()::text::bigint AS xid, set_config('lock_timeout', '{batch_lock_timeout}', true) AS lt FROM l),
sa AS (
	INSERT INTO {schema}.streams AS st (stream_id, category, version, last_tx)
	SELECT a.stream, a.category, a.n, x.xid FROM a, x WHERE a.kind = 0
	ON CONFLICT (stream_id) DO UPDATE SET version = st.version + EXCLUDED.version, last_tx = EXCLUDED.last_tx, updated_at = now()
	WHERE st.last_tx <= EXCLUDED.last_tx
	RETURNING st.stream_id, st.version{wake}
),
sn AS (
	INSERT INTO {schema}.streams (stream_id, category, version, last_tx)
	SELECT a.stream, a.category, a.n, x.xid FROM a, x WHERE a.kind = 1
	ON CONFLICT (stream_id) DO NOTHING
	RETURNING stream_id, version{wake}
),
su AS (
	UPDATE {schema}.streams AS st SET version = st.version + a.n, last_tx = x.xid, updated_at = now()
	FROM a, x
	WHERE st.stream_id = ANY($1::text[]) AND st.stream_id = a.stream AND a.kind >= 2 AND (a.kind = 2 OR st.version = a.expected)
		AND st.last_tx <= x.xid
	RETURNING st.stream_id, st.version{wake}
),
s AS (
	SELECT a.i, a.stream, a.category, a.principal, m.version - a.n AS base, m.version
	FROM (SELECT stream_id, version FROM sa UNION ALL SELECT stream_id, version FROM sn UNION ALL SELECT stream_id, version FROM su) m
	JOIN a ON a.stream = m.stream_id
),
ins AS (
	INSERT INTO {schema}.events (event_id, stream_id, version, category, event_type, schema_version, data, metadata, correlation_id, causation_id, principal)
	SELECT e.id, s.stream, s.base + e.k, s.category, e.type, e.sv, e.data, e.meta, nullif(e.corr, ''), nullif(e.caus, ''), nullif(s.principal, '')
	FROM unnest($6::int8[], $7::int8[], $8::uuid[], $9::text[], $10::int4[], $11::json[], $12::json[], $13::text[], $14::text[])
		WITH ORDINALITY AS e(i, k, id, type, sv, data, meta, corr, caus, o)
	JOIN s ON s.i = e.i
	ORDER BY e.o
	RETURNING stream_id, position, transaction_id
)
SELECT s.i, s.version, max(ins.position), max(ins.transaction_id)
FROM ins JOIN s ON s.stream = ins.stream_id
GROUP BY s.i, s.version`

// batchLockTimeout is the longest the combined statement waits for a row
// lock (see appendBatchSQL): well below deadlock_timeout (1s by default),
// so that the statement gives up before a deadlock check could pick a
// caller's transaction as the victim of a cycle through it.
const batchLockTimeout = "50ms"

// appendStreamSQL is {stream}, by expected version.
var appendStreamSQL = [...]string{
	expectAny: `INSERT INTO {schema}.streams AS st (stream_id, category, version, last_tx) SELECT $1, $3, $2, x.xid FROM x
	ON CONFLICT (stream_id) DO UPDATE SET version = st.version + $2, last_tx = EXCLUDED.last_tx, updated_at = now()
	WHERE st.last_tx <= EXCLUDED.last_tx
	RETURNING st.version - $2 AS base`,
	expectNone: `INSERT INTO {schema}.streams (stream_id, category, version, last_tx) SELECT $1, $3, $2, x.xid FROM x
	ON CONFLICT (stream_id) DO NOTHING
	RETURNING 0::bigint AS base`,
	expectExists: `UPDATE {schema}.streams SET version = version + $2, last_tx = x.xid, updated_at = now() FROM x
	WHERE stream_id = $1 AND last_tx <= x.xid
	RETURNING version - $2 AS base`,
	expectExactly: `UPDATE {schema}.streams SET version = version + $2, last_tx = x.xid, updated_at = now() FROM x
	WHERE stream_id = $1 AND version = $12 AND last_tx <= x.xid
	RETURNING version - $2 AS base`,
}

// buildAppendQueries makes every append statement, its store-wide
// placeholders filled by expand.
func buildAppendQueries(expand *strings.Replacer) map[appendShape]string {
	out := make(map[appendShape]string, 32)
	for i := range 32 {
		shape := appendShape{kind: expectKind(i >> 3), multi: i&4 != 0, lock: i&2 != 0, notify: i&1 != 0}
		q, xid, wake := appendOneSQL, appendXidSQL, ""
		if shape.multi {
			q = appendManySQL
		}
		if shape.lock {
			xid = appendLockXidSQL
		}
		if shape.notify {
			wake = appendWakeSQL
		}
		q = strings.NewReplacer("{xid}", xid, "{stream}", appendStreamSQL[shape.kind], "{wake}", wake).Replace(q)
		out[shape] = expand.Replace(q)
	}
	return out
}

// buildAppendBatchQueries makes the combined append statement, without
// and with the wake-up NOTIFY.
func buildAppendBatchQueries(expand *strings.Replacer) [2]string {
	var out [2]string
	for i, wake := range []string{"", appendWakeSQL} {
		q := strings.NewReplacer("{wake}", wake, "{batch_lock_timeout}", batchLockTimeout).Replace(appendBatchSQL)
		out[i] = expand.Replace(q)
	}
	return out
}

// appendLockSeed seeds the hash of a stream ID into its advisory lock key,
// so that stores in different schemas of one database do not share locks.
func appendLockSeed(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

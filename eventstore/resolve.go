package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/pgtx"
	"github.com/strata-go/strata/internal/retry"
)

// The resolution of an append whose connection was lost.
//
// A statement that may have reached the server can commit after the
// client saw its connection fail: the server process (backend) of the
// lost connection goes on until it notices, which it may do only after
// committing, or, blocked on a lock, much later. So "the events are not
// in the log" is the truth only once that backend has ended. Resolution
// therefore runs on another connection of the pool:
//
//  1. While a backend with the lost connection's process ID and the same
//     role is listed in pg_stat_activity, terminate it
//     (pg_terminate_backend: allowed for backends of one's own role, so
//     for the least-privileged application role too) and look again
//     (internal/pgtx.End). A
//     backend that has left pg_stat_activity has ended its transaction:
//     committed (and visible to any later snapshot) or rolled back. After
//     a server restart the backend is gone anyway.
//  2. Then, in a new statement (a snapshot taken after the backend
//     ended), look the append's event IDs up: all of them stored by one
//     transaction in the stream means the append is stored; none (or not
//     that) means it is not.
//
// The process ID is the one the server gave at connection (BackendKeyData).
// Behind a pooler that hands out its own (PgBouncer), step 1 cannot see the
// server process, and a statement still running there could commit after
// the look-up: connect Strata to Postgres itself.
//
// Process IDs are reused by the operating system, but in sequence: a pid
// comes back only after the pid space has wrapped. If that happened within
// a resolution, a new connection of the same role with that pid is
// terminated too; it loses its connection, and its appends resolve the
// same way. Errors (the database unreachable, this connection cut too) are
// retried with a short backoff until Config.ResolveTimeout, counted from
// the failure and not cut short by the caller's context: a context
// deadline is one way the connection is lost, and the answer is what the
// caller needs then.

// lookupAppendSQL reads whether an append's events ($1) are stored, by
// one transaction in stream $2. The last event has the highest version
// and position, as in the append's own result. Index: events_event_id_key.
const lookupAppendSQL = `SELECT count(*), coalesce(min(transaction_id), 0), coalesce(max(transaction_id), 0),
	coalesce(max(version), 0), coalesce(max(position), 0), coalesce(bool_and(stream_id = $2), false)
	FROM {schema}.events WHERE event_id = ANY($1::uuid[])`

// outcomeUnknown reports whether err, from the append statement, leaves
// its outcome unknown: the statement may have reached the server and the
// answer did not come back. Errors pgconn knows happened before anything
// was sent, and errors the server answered for the statement (severity
// ERROR: the statement failed, its implicit transaction rolled back) are
// known outcomes.
func outcomeUnknown(err error) bool {
	if pgconn.SafeToRetry(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		sev := pgErr.SeverityUnlocalized
		if sev == "" {
			sev = pgErr.Severity
		}
		return sev == "FATAL" || sev == "PANIC"
	}
	return true
}

// resolveAppend learns the outcome of an append whose statement failed
// with cause on c, a connection that may be lost, and reports it as Append
// does. c is released first: the resolution runs on other connections.
func (s *Store) resolveAppend(ctx context.Context, c *pgxpool.Conn, streamID string, a *appendArgs, cause error) (AppendResult, error) {
	pgc := c.Conn().PgConn()
	pid, lost := pgc.PID(), pgc.IsClosed()
	c.Release()
	res, stored, err := s.resolve(ctx, pid, lost, streamID, a.ids)
	return s.resolved(ctx, streamID, a, cause, res, stored, err)
}

// resolved reports what resolve learned of an append whose statement
// failed with cause, as Append does: its result when stored, cause when
// not, an *AmbiguousError when it could not be learned (err).
func (s *Store) resolved(ctx context.Context, streamID string, a *appendArgs, cause error, res AppendResult, stored bool, err error) (AppendResult, error) {
	if err != nil {
		ids := make([]uuid.UUID, len(a.ids))
		for i, id := range a.ids {
			ids[i] = id
		}
		s.cfg.Logger.WarnContext(ctx, "eventstore: append outcome unknown after a lost connection",
			"stream", streamID, "event_id", ids[0], "error", cause, "resolve_error", err)
		return AppendResult{}, &AmbiguousError{StreamID: streamID, EventIDs: ids, Err: cause, Resolve: err}
	}
	s.cfg.Logger.InfoContext(ctx, "eventstore: append outcome resolved after a lost connection",
		"stream", streamID, "event_id", uuid.UUID(a.ids[0]), "stored", stored, "error", cause)
	if stored {
		return res, nil
	}
	return AppendResult{}, fmt.Errorf("eventstore: append to %q: connection lost; the events are not stored (checked on another connection): %w", streamID, cause)
}

// resolve finds out whether the events with ids were stored by one append
// to streamID, once the backend with process ID pid has ended (wait: the
// connection to it was lost; otherwise the statement is over already).
func (s *Store) resolve(ctx context.Context, pid uint32, wait bool, streamID string, ids [][16]byte) (AppendResult, bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ResolveTimeout)
	defer cancel()
	if wait {
		// Terminated and looked for until it is gone (see internal/pgtx).
		if err := pgtx.End(ctx, s.pool, pid, s.cfg.ResolveTimeout); err != nil {
			return AppendResult{}, false, fmt.Errorf("%w (gave up after %s)", err, s.cfg.ResolveTimeout)
		}
	}
	pace := retry.Backoff(time.Millisecond, 50*time.Millisecond)
	for {
		res, stored, err := s.lookupAppend(ctx, streamID, ids)
		if err == nil {
			return res, stored, nil
		}
		if !retry.Sleep(ctx, pace.NextBackOff()) {
			return AppendResult{}, false, fmt.Errorf("look up event %s: %w (gave up after %s)", uuid.UUID(ids[0]), err, s.cfg.ResolveTimeout)
		}
	}
}

// lookupAppend reports whether the events with ids are stored, all of them
// by one transaction in streamID, and with what result.
func (s *Store) lookupAppend(ctx context.Context, streamID string, ids [][16]byte) (AppendResult, bool, error) {
	var n, minTx, maxTx, version, pos int64
	var same bool
	err := s.pool.QueryRow(ctx, s.sql.lookupAppend, ids, streamID).Scan(&n, &minTx, &maxTx, &version, &pos, &same)
	if err != nil {
		return AppendResult{}, false, err
	}
	if n != int64(len(ids)) || minTx != maxTx || !same {
		return AppendResult{}, false, nil
	}
	return AppendResult{Version: version, Position: Position{TxID: uint64(maxTx), Seq: pos}}, true, nil
}

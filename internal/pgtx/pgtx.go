// Package pgtx runs PostgreSQL transactions whose connection may be lost,
// and ends the server process that a lost connection leaves behind.
//
// When the client's side of a connection breaks (a network cut, a context
// deadline that made pgx close it, a half-open TCP connection), the server
// process (backend) behind it may live on, idle in the transaction, with
// its row and advisory locks and its transaction ID, until a TCP keepalive
// notices, hours later. Every gap-safe reader of the event log waits for
// that transaction ID for as long, and every statement that wants one of
// its locks. pgx cannot end it: the connection to it is gone.
//
// Contract:
//
//   - Begin acquires a connection from the pool and remembers its server
//     process ID (BackendKeyData). Run is pgx.BeginFunc on top of it: fn's
//     error or panic rolls back, otherwise the transaction commits.
//   - A connection counts as lost when BEGIN, COMMIT or ROLLBACK fails
//     with anything but an answer from the server (a *pgconn.PgError):
//     an I/O error, a closed connection, a context that ended before or
//     while the command was sent. The transaction's server process is then
//     ended with pg_terminate_backend on another connection of the pool,
//     and looked for in pg_stat_activity until it is no longer listed.
//     A COMMIT whose answer was lost may have committed: ending the
//     process afterwards is harmless, and the outcome is the caller's to
//     learn.
//   - Ending is retried with the project's jittered exponential backoff
//     (internal/retry, 2 ms up to 1 s between attempts, each attempt at
//     most 3 s) until the process is confirmed gone, Options.EndWithin
//     (default 30 s, counted from the loss) passes, or the pool is closed
//     (no attempt can succeed then). The caller waits for it while its
//     context lives; when the context ends first, the ending
//     goes on in the background, within the same bound, and the caller
//     returns at once.
//   - Only processes of the session's own role are ended
//     (pg_terminate_backend is allowed on them without privileges).
//     Process IDs are reused by the operating system only after the pid
//     space wrapped; a reused pid of the same role within the bound would
//     be ended too, and its client sees a lost connection.
//   - Options.IdleTimeout, when positive, is a safety net that costs no
//     round trip: it is sent with BEGIN, in the same simple-protocol
//     message, as SET LOCAL idle_in_transaction_session_timeout, so that
//     the server itself ends a transaction whose client stopped talking,
//     even if this process dies before it could end it (BenchmarkBegin:
//     a few microseconds of server work on an empty transaction). Use it
//     only for transactions that run no caller code between their
//     statements: a handler that thinks longer than the timeout between
//     two statements would lose its connection.
//
// Behind a pooler that hands out its own process IDs (PgBouncer in
// transaction mode), the pid is not the server's: connect to Postgres
// itself.
package pgtx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/strata-go/strata/internal/retry"
)

// DefaultEndWithin is how long ending a lost connection's server process
// is tried when Options.EndWithin is zero.
const DefaultEndWithin = 30 * time.Second

// Options configure a transaction. The zero value is ready to use.
type Options struct {
	// IsoLevel and AccessMode are BEGIN's, as in pgx.TxOptions. Default:
	// the server's (read committed, read write).
	IsoLevel   pgx.TxIsoLevel
	AccessMode pgx.TxAccessMode
	// IdleTimeout, when positive, makes the server end the session if the
	// transaction waits longer than this for its client's next statement
	// (SET LOCAL idle_in_transaction_session_timeout, sent with BEGIN; it
	// costs no round trip). Only for transactions that run no caller code.
	// Default 0: none.
	IdleTimeout time.Duration
	// EndWithin bounds how long the server process of a lost connection
	// is tried to be ended, from the loss. Default DefaultEndWithin.
	EndWithin time.Duration
}

func (o Options) endWithin() time.Duration {
	if o.EndWithin > 0 {
		return o.EndWithin
	}
	return DefaultEndWithin
}

// txOptions is BEGIN, with the idle timeout in the same message if set.
func (o Options) txOptions() pgx.TxOptions {
	opts := pgx.TxOptions{IsoLevel: o.IsoLevel, AccessMode: o.AccessMode}
	if o.IdleTimeout <= 0 {
		return opts
	}
	begin := "BEGIN"
	if o.IsoLevel != "" {
		begin += " ISOLATION LEVEL " + string(o.IsoLevel)
	}
	if o.AccessMode != "" {
		begin += " " + string(o.AccessMode)
	}
	// Two statements in one simple-protocol Query: one round trip, and
	// the setting lives exactly as long as the transaction.
	opts.BeginQuery = fmt.Sprintf("%s; SET LOCAL idle_in_transaction_session_timeout = %d", begin, max(o.IdleTimeout.Milliseconds(), 1))
	return opts
}

// Tx is a transaction that ends its server process if its connection is
// lost (see the package doc). Commit and Rollback release the connection
// to the pool. A Tx is not safe for concurrent use, as a pgx.Tx is not.
type Tx struct {
	pgx.Tx
	c      *pgxpool.Conn // nil once the transaction ended
	pool   *pgxpool.Pool
	pid    uint32
	within time.Duration
}

var _ pgx.Tx = (*Tx)(nil)

// Begin begins a transaction on a connection of pool.
func Begin(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Tx, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	pid := c.Conn().PgConn().PID()
	tx, err := c.Conn().BeginTx(ctx, opts.txOptions())
	if err != nil {
		c.Release()
		if lost(err) {
			// BEGIN may have reached the server; its process holds no
			// transaction ID nor lock yet, but a connection slot, and
			// whatever opts.IdleTimeout did not get to set.
			_ = End(ctx, pool, pid, opts.endWithin())
		}
		return nil, err
	}
	return &Tx{Tx: tx, c: c, pool: pool, pid: pid, within: opts.endWithin()}, nil
}

// PID is the process ID of the transaction's server process.
func (t *Tx) PID() uint32 { return t.pid }

// Commit commits the transaction and releases its connection. If the
// connection was lost, it ends the server process before returning the
// error (see the package doc).
func (t *Tx) Commit(ctx context.Context) error {
	return t.finish(ctx, t.Tx.Commit(ctx))
}

// Rollback rolls the transaction back and releases its connection; after
// Commit or Rollback it returns pgx.ErrTxClosed. If the connection was
// lost, it ends the server process before returning the error.
func (t *Tx) Rollback(ctx context.Context) error {
	return t.finish(ctx, t.Tx.Rollback(ctx))
}

// finish releases the connection once the transaction ended, and ends the
// server process if err says the connection was lost.
func (t *Tx) finish(ctx context.Context, err error) error {
	if t.c == nil {
		return err
	}
	t.c.Release()
	t.c = nil
	if lost(err) {
		_ = End(ctx, t.pool, t.pid, t.within)
	}
	return err
}

// Run runs fn in a transaction on pool and commits it, as pgx.BeginFunc
// does: fn's error, or its panic, rolls the transaction back and is
// returned (the panic goes on). fn may end the transaction itself; its
// tx ends the server process of a lost connection as Tx does.
func Run(ctx context.Context, pool *pgxpool.Pool, opts Options, fn func(pgx.Tx) error) (err error) {
	tx, err := Begin(ctx, pool, opts)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := tx.Rollback(ctx); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) && err == nil {
			err = rerr
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// lost reports whether err, from BEGIN, COMMIT or ROLLBACK, leaves the
// transaction's server process possibly running with no client: the
// command failed without an answer from the server.
func lost(err error) bool {
	if err == nil || errors.Is(err, pgx.ErrTxClosed) || errors.Is(err, pgx.ErrTxCommitRollback) {
		return false
	}
	var pgErr *pgconn.PgError
	return !errors.As(err, &pgErr)
}

// terminate ends the server process with the given pid if it is one of
// the session's role, and returns a row, whatever pg_terminate_backend
// says, exactly when the process is still listed.
const terminate = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND usename = session_user`

// attemptTimeout bounds one attempt of End: a connection that hangs (a
// partition without a reset) must not use up the whole bound.
const attemptTimeout = 3 * time.Second

// End ends the server process pid of a lost connection, through another
// connection of pool, and returns nil once pg_stat_activity no longer
// lists it (a process of another role is never listed). It retries with
// jittered exponential backoff until within has passed, and then returns
// the last error. If ctx ends first, End returns ctx's error at once and
// goes on in the background until within has passed.
func End(ctx context.Context, pool *pgxpool.Pool, pid uint32, within time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- end(context.WithoutCancel(ctx), pool, pid, within) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("end server process %d: continuing in the background: %w", pid, context.Cause(ctx))
	}
}

func end(ctx context.Context, pool *pgxpool.Pool, pid uint32, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		rows, err := pool.Query(actx, terminate, int32(pid))
		if errors.Is(err, puddle.ErrClosedPool) {
			// No attempt can succeed any more.
			return struct{}{}, backoff.Permanent(err)
		}
		if err != nil {
			return struct{}{}, err
		}
		listed := rows.Next()
		rows.Close()
		if err := rows.Err(); err != nil {
			return struct{}{}, err
		}
		if listed {
			return struct{}{}, errStillListed
		}
		return struct{}{}, nil
	}, backoff.WithBackOff(retry.Backoff(2*time.Millisecond, time.Second)), backoff.WithMaxElapsedTime(within))
	if err != nil {
		return fmt.Errorf("end server process %d: %w", pid, err)
	}
	return nil
}

// errStillListed is End's error while the process is still listed.
var errStillListed = errors.New("still running")

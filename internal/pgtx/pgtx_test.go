package pgtx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/pgtx"
)

// proxied returns a pool to the test server through a new fault proxy
// (CancelRequests dropped, as a real partition would), the proxy, and the
// test database, whose own pool is direct.
func proxied(t *testing.T, maxConns int32) (*pgxpool.Pool, *faultproxy.Proxy, *pgtest.DB) {
	t.Helper()
	db := pgtest.NewEmpty(t)
	cfg, p, err := faultproxy.PoolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	p.SetDropCancels(true)
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{db.Schema}.Sanitize()+`;
		CREATE TABLE `+table(db)+` (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return pool, p, db
}

func table(db *pgtest.DB) string { return pgx.Identifier{db.Schema, "t"}.Sanitize() }

// state is the server process pid's state in pg_stat_activity, "" when it
// is not listed.
func state(t *testing.T, db *pgtest.DB, pid uint32) string {
	t.Helper()
	var s string
	err := db.Pool.QueryRow(context.Background(), `SELECT coalesce(state, '?') FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// beginWithRow begins a transaction on pool that inserted a row (so holds
// a transaction ID and the row's lock); it is rolled back at the end of
// the test if still open.
func beginWithRow(t *testing.T, pool *pgxpool.Pool, db *pgtest.DB, opts pgtx.Options) *pgtx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := pgtx.Begin(ctx, pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `INSERT INTO `+table(db)+` VALUES ($1)`, 1); err != nil {
		t.Fatal(err)
	}
	return tx
}

// gone fails t if the server process pid is still listed after call
// returned.
func gone(t *testing.T, db *pgtest.DB, pid uint32, call string) {
	t.Helper()
	if s := state(t, db, pid); s != "" {
		t.Fatalf("server process %d of the lost connection still listed (%s) after %s returned", pid, s, call)
	}
}

// waitGone fails t if the server process pid is still listed 10 s from
// now; what says when, for the message.
func waitGone(t *testing.T, db *pgtest.DB, pid uint32, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for state(t, db, pid) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("server process %d %s", pid, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holdNext arms p to cut the next statement of the given message types
// after forwarding it, leaving the server's side of the connection open.
func holdNext(p *faultproxy.Proxy, types string) {
	p.SetCut(&faultproxy.Cut{Types: types, Upstream: faultproxy.UpstreamHold, Times: 1})
}

// TestRunEndsHeldProcess: a statement in the transaction is cut after it
// reached the server, whose side of the connection stays open: the
// server process is left idle in the transaction with its row lock and
// transaction ID. Run returns the statement's error only once that process
// is gone, and the lock is free at once.
func TestRunEndsHeldProcess(t *testing.T) {
	t.Parallel()
	pool, p, db := proxied(t, 4)
	ctx := context.Background()
	var pid uint32
	err := pgtx.Run(ctx, pool, pgtx.Options{}, func(tx pgx.Tx) error {
		pid = tx.(*pgtx.Tx).PID()
		if _, err := tx.Exec(ctx, `INSERT INTO `+table(db)+` VALUES ($1)`, 1); err != nil {
			return err
		}
		holdNext(p, "E")
		_, err := tx.Exec(ctx, `INSERT INTO `+table(db)+` VALUES ($1)`, 2)
		return err
	})
	if err == nil {
		t.Fatal("Run returned nil after its connection was cut")
	}
	gone(t, db, pid, "Run")
	// Nothing waits on the lost transaction's lock.
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := db.Pool.Exec(lctx, `INSERT INTO `+table(db)+` VALUES (1)`); err != nil {
		t.Fatalf("insert the lost transaction's key: %v", err)
	}
}

// TestCommitCutEndsProcess: COMMIT is cut after it was sent; the server
// commits and its side of the connection stays open. Commit returns an
// error (the outcome is unknown to the client) and the process is gone.
func TestCommitCutEndsProcess(t *testing.T) {
	t.Parallel()
	pool, p, db := proxied(t, 4)
	ctx := context.Background()
	tx := beginWithRow(t, pool, db, pgtx.Options{})
	holdNext(p, "Q")
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("Commit returned nil after its connection was cut")
	}
	if s := state(t, db, tx.PID()); s != "" {
		t.Fatalf("server process %d of the lost connection still listed (%s) after Commit returned", tx.PID(), s)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
		t.Fatalf("Rollback after Commit: %v, want pgx.ErrTxClosed", err)
	}
}

// TestCommitInPartitionEndsProcess: COMMIT is sent into a network
// partition; the caller's deadline passes, pgx closes the connection, and
// that close is lost in the partition too: the server process, which
// never got the COMMIT, waits idle in the transaction, half-open. Once
// the network is back it is ended (in the background: the caller's
// context had ended) and the transaction rolled back.
func TestCommitInPartitionEndsProcess(t *testing.T) {
	t.Parallel()
	pool, p, db := proxied(t, 4)
	ctx := context.Background()
	tx := beginWithRow(t, pool, db, pgtx.Options{})
	p.SetPartition(true)
	p.SetRefuse(true)
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := tx.Commit(cctx); err == nil {
		t.Fatal("Commit returned nil in a partition")
	}
	if s := state(t, db, tx.PID()); s != "idle in transaction" {
		t.Fatalf("server process %d in the partition: state %q, want idle in transaction", tx.PID(), s)
	}
	// pgx closes the lost connection in the background (a CancelRequest,
	// refused, then a Terminate, lost): let the close happen in the
	// partition.
	time.Sleep(300 * time.Millisecond)
	p.SetPartition(false)
	p.SetRefuse(false)
	waitGone(t, db, tx.PID(), "of the half-open connection still listed 10s after the partition")
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table(db)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows (%v), want 0: the COMMIT never reached the server", n, err)
	}
}

// TestBeginCutEndsProcess: BEGIN reached the server, its answer did not.
func TestBeginCutEndsProcess(t *testing.T) {
	t.Parallel()
	pool, p, db := proxied(t, 1)
	ctx := context.Background()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Conn().PgConn().PID()
	c.Release()
	holdNext(p, "Q")
	if _, err := pgtx.Begin(ctx, pool, pgtx.Options{}); err == nil {
		t.Fatal("Begin returned nil after its connection was cut")
	}
	gone(t, db, pid, "Begin")
}

// TestEndRetriesThroughOutage: the connection is lost in an outage that
// also refuses new connections for a while, the very moment the process
// has to be ended. The ending is retried until the database can be
// reached again.
func TestEndRetriesThroughOutage(t *testing.T) {
	t.Parallel()
	pool, p, db := proxied(t, 4)
	ctx := context.Background()
	var pid uint32
	start := time.Now()
	err := pgtx.Run(ctx, pool, pgtx.Options{EndWithin: 20 * time.Second}, func(tx pgx.Tx) error {
		pid = tx.(*pgtx.Tx).PID()
		if _, err := tx.Exec(ctx, `INSERT INTO `+table(db)+` VALUES ($1)`, 1); err != nil {
			return err
		}
		pool.Reset() // no idle connection survives the outage
		p.SetRefuse(true)
		time.AfterFunc(700*time.Millisecond, func() { p.SetRefuse(false) })
		holdNext(p, "E")
		_, err := tx.Exec(ctx, `INSERT INTO `+table(db)+` VALUES ($1)`, 2)
		return err
	})
	if err == nil {
		t.Fatal("Run returned nil after its connection was cut")
	}
	gone(t, db, pid, "Run")
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Fatalf("Run returned after %v, before the outage ended", d)
	}
}

// TestEndInBackground: a caller whose context ends does not wait for the
// ending, which goes on in the background.
func TestEndInBackground(t *testing.T) {
	t.Parallel()
	pool, p, db := proxied(t, 4)
	ctx := context.Background()
	tx := beginWithRow(t, pool, db, pgtx.Options{})
	pool.Reset()
	p.SetRefuse(true)
	holdNext(p, "E")
	if _, err := tx.Exec(ctx, `SELECT $1::int`, 1); err == nil {
		t.Fatal("Exec returned nil after its connection was cut")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	if err := tx.Rollback(cctx); err == nil {
		t.Fatal("Rollback on a lost connection returned nil")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Rollback with an ended context took %v", d)
	}
	if state(t, db, tx.PID()) == "" {
		t.Fatal("the process ended with the proxy refusing connections")
	}
	p.SetRefuse(false)
	waitGone(t, db, tx.PID(), "still listed 10s after the outage")
}

// TestIdleTimeout: with IdleTimeout, a transaction whose client stops
// talking is ended by the server itself, with no help from the client.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	pool, _, db := proxied(t, 4)
	ctx := context.Background()
	tx := beginWithRow(t, pool, db, pgtx.Options{IdleTimeout: 200 * time.Millisecond})
	waitGone(t, db, tx.PID(), "still listed 10s after its 200ms idle timeout")
	// The setting was the transaction's own: the pool's next transaction
	// (on another connection, the first one is gone) has the server's.
	err := pgtx.Run(ctx, pool, pgtx.Options{}, func(tx pgx.Tx) error {
		var v string
		if err := tx.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&v); err != nil {
			return err
		}
		if v == "200ms" {
			t.Errorf("idle_in_transaction_session_timeout %s outside the transaction that set it", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunCommitsAndRollsBack: without faults Run is pgx.BeginFunc.
func TestRunCommitsAndRollsBack(t *testing.T) {
	t.Parallel()
	pool, _, db := proxied(t, 2)
	ctx := context.Background()
	for _, opts := range []pgtx.Options{{}, {IdleTimeout: time.Minute}} {
		if _, err := db.Pool.Exec(ctx, `TRUNCATE `+table(db)); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		err := pgtx.Run(ctx, pool, opts, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO `+table(db)+` VALUES (1)`)
			if err == nil {
				err = boom
			}
			return err
		})
		if !errors.Is(err, boom) {
			t.Fatalf("%+v: Run: %v, want boom", opts, err)
		}
		if err := pgtx.Run(ctx, pool, opts, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO `+table(db)+` VALUES (2)`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var ids []int32
		rows, _ := db.Pool.Query(ctx, `SELECT id FROM `+table(db)+` ORDER BY id`)
		ids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil || len(ids) != 1 || ids[0] != 2 {
			t.Fatalf("%+v: rows %v (%v), want [2]", opts, ids, err)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a panic in fn did not go on")
			}
		}()
		_ = pgtx.Run(ctx, pool, pgtx.Options{}, func(tx pgx.Tx) error { panic("handler") })
	}()
	if s := pool.Stat(); s.AcquiredConns() != 0 {
		t.Fatalf("%d connections still acquired", s.AcquiredConns())
	}
}

// TestOptionsBegin: the isolation level and access mode hold with and
// without the idle timeout sent along with BEGIN.
func TestOptionsBegin(t *testing.T) {
	t.Parallel()
	pool, _, _ := proxied(t, 2)
	ctx := context.Background()
	for _, idle := range []time.Duration{0, time.Minute} {
		opts := pgtx.Options{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly, IdleTimeout: idle}
		err := pgtx.Run(ctx, pool, opts, func(tx pgx.Tx) error {
			var iso, ro, timeout string
			if err := tx.QueryRow(ctx, `SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'),
				current_setting('idle_in_transaction_session_timeout')`).Scan(&iso, &ro, &timeout); err != nil {
				return err
			}
			if iso != "repeatable read" || ro != "on" || (idle > 0) != (timeout == "1min") {
				t.Errorf("idle timeout %v: isolation %q, read only %q, idle_in_transaction_session_timeout %q", idle, iso, ro, timeout)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkBegin measures what the idle timeout adds to a transaction:
// BEGIN and COMMIT with and without the SET LOCAL sent along with BEGIN.
func BenchmarkBegin(b *testing.B) {
	db := pgtest.NewEmpty(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		opts pgtx.Options
	}{{"plain", pgtx.Options{}}, {"idle-timeout", pgtx.Options{IdleTimeout: 30 * time.Second}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := pgtx.Run(ctx, db.Pool, bc.opts, func(pgx.Tx) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

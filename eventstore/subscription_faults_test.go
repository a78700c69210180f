package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
)

// proxiedStore is a store on db's schema whose pool goes through a new
// fault proxy, under an application name of its own.
func proxiedStore(t *testing.T, db *pgtest.DB, maxConns int32) (*eventstore.Store, *faultproxy.Proxy, string) {
	t.Helper()
	cfg, p, err := faultproxy.PoolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// pgx sends a CancelRequest when it loses a connection; across a real
	// partition it would not arrive either.
	p.SetDropCancels(true)
	app := "strata-faults-" + db.Schema
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	return eventstore.New(pool, &eventstore.Config{Schema: db.Schema, Logger: quiet}), p, app
}

// TestSubscriptionLostBatchEndsItsBackend: the connection of a batch's
// transaction is lost after the handler's first write reached the server,
// whose side of the connection stays open (the client's side broke; the
// server would notice at its next keepalive, hours later). That server
// process sits idle in the transaction, holding the row it wrote and a
// transaction ID. The retry of the batch must not wait for it: the
// subscription ends it, and every event is handled once. Before the fix
// the retry's insert waited on the held row for good (and the held
// transaction ID held back every gap-safe reader of the cluster).
func TestSubscriptionLostBatchEndsItsBackend(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	direct := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	s, p, app := proxiedStore(t, db, 4)
	rm := newReadModel(t, db)
	appendN(t, direct, 2, 3, "Added")

	var armed atomic.Bool
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "held", LeaseTTL: 30 * time.Second, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, sub, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		if armed.CompareAndSwap(false, true) {
			// The next statement (this handler's first write) is cut
			// once the server has it; its server process is held.
			p.SetCut(&faultproxy.Cut{Types: "E", Upstream: faultproxy.UpstreamHold, Times: 1})
		}
		return rm.handle(ctx, tx, events)
	})
	waitFor(t, "the 6 events handled once each after the lost batch", 20*time.Second, func() bool { return rm.count(t) == 6 })
	if p.Cuts() != 1 {
		t.Fatalf("%d cuts, want 1", p.Cuts())
	}
	var held int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, app).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if held != 0 {
		t.Fatalf("%d server processes of lost connections still idle in a transaction", held)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// connectionLost reports errors of a lost or unreachable database, which
// say nothing about the event (a subscription's Transient).
func connectionLost(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "failed to connect") || strings.Contains(msg, "connection reset")
}

// faultDuration is how long a fault test injects faults and how likely a
// statement is cut: a few seconds in the normal suite and the fault-gated
// run, 30 s with STRATA_LONG_FAULTS=1.
func faultDuration() (time.Duration, float64) {
	if os.Getenv("STRATA_LONG_FAULTS") == "1" {
		return 30 * time.Second, 0.03
	}
	return 3 * time.Second, 0.02
}

// TestSubscriptionUnderFaults: two processes share a subscription's
// partitions through the fault proxy while writers append on a direct
// pool. Statements are cut at random at the worst moment (after being
// sent; the server's side closed, closed after it answered, or held), and
// in the first half of the run every connection is cut at once, or the
// proxy blackholed for a moment, at random moments. Promises 2 and 3:
// after the faults stop the subscription recovers by itself, and the read
// model its handler writes in the batch's transaction holds every event
// once (event ID primary key) and each stream in order (the handler
// refuses a version that is not the stream's next); nothing is parked.
func TestSubscriptionUnderFaults(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	direct := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	s, p, app := proxiedStore(t, db, 8)
	rm := newReadModel(t, db)

	var refused atomic.Int64
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		err := rm.handle(ctx, tx, events)
		if err != nil && !connectionLost(err) {
			refused.Add(1) // a redelivery of an event applied already
		}
		return err
	}
	for _, owner := range []string{"a", "b"} {
		sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "faults", Owner: owner, Partitions: 4, BatchSize: 50,
			RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 500 * time.Millisecond, LeaseTTL: 2 * time.Second,
			PollInterval: 200 * time.Millisecond, Transient: connectionLost})
		if err != nil {
			t.Fatal(err)
		}
		run(t, sub, h)
	}

	d, cutP := faultDuration()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var appended atomic.Int64
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				stream := fmt.Sprintf("s-%d", rand.IntN(20))
				if _, err := direct.Append(ctx, stream, eventstore.Any, ev("Added", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))); err == nil {
					appended.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	st := faultproxy.TwoPhaseStorm(ctx, d, cutP, p)
	cancel()
	wg.Wait()

	var stored int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	recovered := time.Now()
	waitFor(t, fmt.Sprintf("the read model to hold all %d events", stored), 60*time.Second, func() bool { return rm.count(t) == stored })
	// Every event once, each stream at its last version.
	var bad int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT stream_id, max(version) v, count(*) n FROM `+
		pgx.Identifier{db.Schema, "events"}.Sanitize()+` GROUP BY stream_id) e
		FULL JOIN `+pgx.Identifier{db.Schema, "rm_streams"}.Sanitize()+` r USING (stream_id)
		WHERE r.version IS DISTINCT FROM e.v OR e.n IS DISTINCT FROM e.v`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Fatalf("%d streams of the read model differ from the log", bad)
	}
	// No server process of a lost connection is left in a transaction,
	// holding the cluster's gap-safe readers.
	if err := faultproxy.WaitNoneHeld(context.Background(), db.Pool, app, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if dl, err := direct.DeadLetters(context.Background(), "faults"); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters after faults: %v, %v; want none", dl, err)
	}
	t.Logf("%d events (%d appends acknowledged); faults for %v: %d connections cut (%d CutAll, %d blackholes); "+
		"%d redelivered batches refused; caught up %v after the faults",
		stored, appended.Load(), d, st.Cuts, st.CutAlls, st.Blackholes, refused.Load(), time.Since(recovered).Round(time.Millisecond))
}

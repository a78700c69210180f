package dashboard_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/dashboard"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/migrations"
)

// TestOverviewAtScale times the overview of 100 subscriptions of 4
// partitions each over a log of STRATA_UI_SCALE events (default 100,000
// in the ordinary run; 10,000,000 for the figure in the README), on a
// private cluster: a tenth of the partitions at the start of the log, a
// third 50,000 events behind (or half the log), the rest caught up. The overview must
// render in under a second, the sample included: its queries read the
// subscriptions' rows and the head of the log, and count each
// partition's lag over at most Config.MaxLag entries, so the log's size
// does not enter its cost. Under the race detector (which slows rendering
// several times) the times are logged, not checked.
func TestOverviewAtScale(t *testing.T) {
	events := int64(50_000)
	if s := os.Getenv("STRATA_UI_SCALE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 50_000 {
			t.Fatalf("STRATA_UI_SCALE=%q: want a number of events, at least 50000", s)
		}
		events = n
	}
	c := pgtest.StartCluster(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const schema = "scale"
	if err := migrations.Apply(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	loaded := time.Now()
	loadLog(t, pool, schema, events)
	t.Logf("loaded %d events in %s", events, time.Since(loaded).Round(time.Second))
	store := eventstore.New(pool, &eventstore.Config{Schema: schema})
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loadSubscriptions(t, pool, schema, head.Position, min(50_000, events/2))

	// Without Run, each request samples when the last sample is older
	// than 2s: a clock that jumps a minute before each request makes each
	// one sample afresh.
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ts := httptest.NewServer(dashboard.New(store, &dashboard.Config{Now: now}))
	defer ts.Close()
	sampling := timeOverview(t, ts, 7, func() { skew.Add(int64(time.Minute)) })
	// With Run sampling, a request renders Run's last sample.
	_, withRun := serve(t, store, nil)
	rendering := timeOverview(t, withRun, 7, func() {})
	explainProbe(t, c.URL, schema)
	for _, maxLag := range []int64{100, 1000} {
		t0 := time.Now()
		if _, err := store.ProbeSubscription(ctx, "", eventstore.ProbeOptions{MaxLag: maxLag}); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if _, err := store.Head(ctx); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		if _, err := store.Horizon(ctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("MaxLag %d: probe %s, head %s, horizon %s", maxLag, t1.Sub(t0), t2.Sub(t1), time.Since(t2))
	}
	for _, r := range []struct {
		what string
		took []time.Duration
	}{{"each request sampling", sampling}, {"rendering the sampler's last sample", rendering}} {
		slices.Sort(r.took)
		median := r.took[len(r.took)/2]
		t.Logf("overview of 100 subscriptions × 4 partitions over %d events, %s: min %s, median %s, max %s (%d requests; machine shared and loaded)",
			events, r.what, r.took[0].Round(time.Millisecond), median.Round(time.Millisecond), r.took[len(r.took)-1].Round(time.Millisecond), len(r.took))
		if median > time.Second && !raceEnabled {
			t.Errorf("the overview, %s, took %s (median), want under 1s", r.what, median)
		}
	}
}

// timeOverview requests the overview n times, calling before ahead of
// each, and returns how long each but the first (which warms the caches)
// took.
func timeOverview(t *testing.T, ts *httptest.Server, n int, before func()) []time.Duration {
	t.Helper()
	var took []time.Duration
	for i := range n {
		before()
		start := time.Now()
		resp, body := get(t, ts.Client(), ts.URL+"/")
		d := time.Since(start)
		if resp.StatusCode != 200 || !strings.Contains(body, "projection:view_099") {
			t.Fatalf("overview: %s\n%s", resp.Status, body)
		}
		if i > 0 {
			took = append(took, d)
		}
	}
	return took
}

// explainProbe logs the plan of the overview's sample of the
// subscriptions (ProbeSubscription with the default MaxLag, 100) as the
// server ran it, from auto_explain: the index range scans it made and the
// rows each read, whatever the size of the log.
func explainProbe(t *testing.T, url, schema string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var plans []string
	cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		plans = append(plans, n.Message)
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;
			SET auto_explain.log_buffers = on; SET auto_explain.log_timing = off; SET auto_explain.log_level = notice`)
		return err
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: schema})
	if _, err := store.ProbeSubscription(ctx, "", eventstore.ProbeOptions{MaxLag: 100}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range plans {
		if strings.Contains(p, "subscriptions s") {
			t.Logf("the sample's plan (auto_explain):\n%s", p)
		}
	}
}

// loadLog inserts n small events into 1/10 as many streams, a million
// per transaction, straight into the tables (as a superuser: this is
// test data, not an append).
func loadLog(t *testing.T, pool *pgxpool.Pool, schema string, n int64) {
	t.Helper()
	ctx := context.Background()
	s := pgx.Identifier{schema}.Sanitize()
	for from := int64(0); from < n; from += 1_000_000 {
		to := min(from+1_000_000, n)
		_, err := pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.events (event_id, stream_id, version, category, event_type, schema_version, data, correlation_id)
			SELECT gen_random_uuid(), 'order-' || (g / 10), g %% 10 + 1, 'order',
				(ARRAY['OrderPlaced','PaymentCompleted','ConfirmationSent'])[g %% 3 + 1], 1, '{"n":1}', 'corr-' || (g / 10)
			FROM generate_series($1::bigint, $2::bigint - 1) g`, s), from, to)
		if err != nil {
			t.Fatal(err)
		}
	}
	// The streams' rows may only be written by appends (a trigger): as a
	// superuser, with triggers off for this transaction.
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s.streams (stream_id, category, version)
			SELECT stream_id, 'order', max(version) FROM %[1]s.events GROUP BY stream_id`, s))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf(`ANALYZE %[1]s.events; ANALYZE %[1]s.streams`, s)); err != nil {
		t.Fatal(err)
	}
}

// loadSubscriptions makes 100 subscriptions of 4 partitions: every tenth
// at the start of the log, every third behindBy events behind head, the
// others at head; some filtered by type.
func loadSubscriptions(t *testing.T, pool *pgxpool.Pool, schema string, head eventstore.Position, behindBy int64) {
	t.Helper()
	ctx := context.Background()
	var behind eventstore.Position
	err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT transaction_id, position FROM %s.events WHERE position <= $1 ORDER BY position DESC LIMIT 1`,
		pgx.Identifier{schema}.Sanitize()), head.Seq-behindBy).Scan(&behind.TxID, &behind.Seq)
	if err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	for i := range 100 {
		at := head
		switch {
		case i%10 == 0:
			at = eventstore.Position{}
		case i%3 == 0:
			at = behind
		}
		types := []string{}
		if i%4 == 1 {
			types = []string{"PaymentCompleted"}
		}
		for p := range 4 {
			b.Queue(fmt.Sprintf(`INSERT INTO %s.subscriptions (name, partition, partitions, event_types, position_tx, position_seq, owner, lease_until, state, events_handled)
				VALUES ($1, $2, 4, $3, $4, $5, $6, now() + interval '1 hour', 'running', $5)`, pgx.Identifier{schema}.Sanitize()),
				fmt.Sprintf("projection:view_%03d", i), p, types, int64(at.TxID), at.Seq, fmt.Sprintf("worker-%d", p))
		}
	}
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
}

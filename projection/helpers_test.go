package projection_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

func newStore(t testing.TB) (*eventstore.Store, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	return eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema}), db
}

// totals is the read model of most tests: per stream, how many events, the
// sum of their "n" fields and the last version applied. The handler
// refuses an event whose version is not the stream's last + 1, so a lost,
// doubled or reordered effect cannot go unnoticed; the table can be
// compared with the same figures computed directly from the events.
type totals struct {
	schema, table string
}

func newTotals(t testing.TB, pool *pgxpool.Pool, schema, table string) *totals {
	t.Helper()
	tt := &totals{schema: schema, table: table}
	if _, err := pool.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS `+tt.name()+
		` (stream_id text PRIMARY KEY, events bigint NOT NULL, total bigint NOT NULL, last_version bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return tt
}

func (tt *totals) name() string { return pgx.Identifier{tt.schema, tt.table}.Sanitize() }

func (tt *totals) Handle(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	var d struct{ N int64 }
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return err
	}
	if e.Version == 1 {
		// A second insert of the stream fails on the primary key.
		_, err := tx.Exec(ctx, `INSERT INTO `+tt.name()+` VALUES ($1, 1, $2, 1)`, e.StreamID, d.N)
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE `+tt.name()+` SET events = events + 1, total = total + $2, last_version = $3
		WHERE stream_id = $1 AND last_version = $3 - 1`, e.StreamID, d.N, e.Version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("stream %s: version %d applied out of order", e.StreamID, e.Version)
	}
	return nil
}

func (tt *totals) reset(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `TRUNCATE `+tt.name())
	return err
}

// row is one stream's figures.
type row struct {
	Events, Total, LastVersion int64
}

func (tt *totals) read(t testing.TB, pool *pgxpool.Pool) map[string]row {
	t.Helper()
	return queryRows(t, pool, `SELECT stream_id, events, total, last_version FROM `+tt.name())
}

// expected computes the read model straight from the events.
func expected(t testing.TB, pool *pgxpool.Pool, schema string, types ...string) map[string]row {
	t.Helper()
	q := `SELECT stream_id, count(*), coalesce(sum((data->>'n')::bigint), 0), max(version) FROM ` +
		pgx.Identifier{schema, "events"}.Sanitize()
	if len(types) > 0 {
		q += ` WHERE event_type = ANY($1)`
		return queryRows(t, pool, q+` GROUP BY stream_id`, types)
	}
	return queryRows(t, pool, q+` GROUP BY stream_id`)
}

func queryRows(t testing.TB, pool *pgxpool.Pool, q string, args ...any) map[string]row {
	t.Helper()
	rows, err := pool.Query(context.Background(), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]row{}
	var id string
	var r row
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.Events, &r.Total, &r.LastVersion}, func() error { out[id] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func equalRows(a, b map[string]row) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diffRows(a, b map[string]row) string {
	n := 0
	s := fmt.Sprintf("%d vs %d streams;", len(a), len(b))
	for k, v := range a {
		if b[k] != v && n < 5 {
			s += fmt.Sprintf(" %s: %+v vs %+v;", k, v, b[k])
			n++
		}
	}
	return s
}

// waitModel waits until the read model equals the one computed from the
// events (a gap-safe reader may be held back by other tests' open
// transactions, so it polls until a deadline).
func waitModel(t testing.TB, pool *pgxpool.Pool, tt *totals, schema string, d time.Duration, types ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, want := tt.read(t, pool), expected(t, pool, schema, types...)
		if equalRows(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model %s differs from the events after %s: %s", tt.table, d, diffRows(got, want))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func event(typ string, n int64) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, Data: fmt.Appendf(nil, `{"n":%d}`, n)}
}

// appendSome appends perStream events of type typ to each of streams
// streams, one append each.
func appendSome(t testing.TB, s *eventstore.Store, prefix string, streams, perStream int, typ string) {
	t.Helper()
	for i := range perStream {
		for k := range streams {
			if _, err := s.Append(context.Background(), fmt.Sprintf("%s-%d", prefix, k), eventstore.Any, event(typ, int64(i+k))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// writers appends to random streams from n goroutines until stopped,
// returning how many appends succeeded.
func writers(s *eventstore.Store, n int, prefix string, pause time.Duration) (stop func() int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok atomic.Int64
	for w := range n {
		wg.Go(func() {
			for i := int64(0); ctx.Err() == nil; i++ {
				stream := fmt.Sprintf("%s-%d", prefix, rand.IntN(20))
				if _, err := s.Append(ctx, stream, eventstore.Any, event("Tick", i+int64(w))); err == nil {
					ok.Add(1)
				} else if ctx.Err() == nil {
					time.Sleep(50 * time.Millisecond) // the server may be restarting
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		})
	}
	return func() int64 { cancel(); wg.Wait(); return ok.Load() }
}

// runRunner runs r in the background; stop cancels it and returns Run's
// error.
func runRunner(t testing.TB, r *projection.Runner) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("Run did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func statusOf(t testing.TB, r *projection.Runner, name string) projection.Status {
	t.Helper()
	st, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %q", name)
	return projection.Status{}
}

// Child processes: the test binary re-executed with STRATA_PROJECTION_CHILD
// set runs a Runner of one "totals" projection until it is killed.
const childEnv = "STRATA_PROJECTION_CHILD"

type childConfig struct {
	URL, Schema, Name, Table, Owner string
	Partitions, BatchSize           int
	LeaseTTL                        time.Duration
	// Delay is spent in the handler before each event, outside Postgres
	// (a call to another service); with Serial, one such call at a time
	// per process (a client with one connection to that service).
	Delay  time.Duration
	Serial bool
	// PoolSize is the child's pool's MaxConns; 0: pgxpool's default.
	PoolSize int32
}

// TestChildProcess is not a test: it is the body of the child processes
// that the SIGKILL tests start.
func TestChildProcess(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("child process body; run by other tests")
	}
	var c childConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	if c.PoolSize > 0 {
		pc.MaxConns = c.PoolSize
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: c.Schema})
	tt := &totals{schema: c.Schema, table: c.Table}
	var h projection.Handler = tt
	if c.Delay > 0 {
		h = &remoteCall{next: tt, delay: c.Delay, serial: c.Serial}
	}
	r := projection.NewRunner(store, []projection.Projection{{Name: c.Name, Handler: h, Reset: tt.reset, Partitions: c.Partitions}},
		&projection.Config{Owner: c.Owner, LeaseTTL: c.LeaseTTL, BatchSize: c.BatchSize, PollInterval: 100 * time.Millisecond})
	fmt.Println("child running")
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	done  chan struct{}
	ready chan struct{} // closed once it printed "child running"
}

func startChild(t testing.TB, c childConfig) *child {
	t.Helper()
	raw, _ := json.Marshal(c)
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	ch := &child{cmd: cmd, done: make(chan struct{}), ready: make(chan struct{})}
	go func() {
		defer out.Close()
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if lines.Text() == "child running" {
				close(ch.ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { _ = cmd.Wait(); close(ch.done) }()
	t.Cleanup(ch.kill)
	return ch
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

func itoa(n int) string { return strconv.Itoa(n) }

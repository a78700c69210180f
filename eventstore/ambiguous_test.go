package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
)

// throughProxy returns a pool of at most maxConns connections to url's
// server through a fault proxy, logging in as user ("" keeps url's user).
func throughProxy(t *testing.T, url, user string, maxConns int32) (*pgxpool.Pool, *faultproxy.Proxy) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.ConnConfig
	cc.Host, cc.Port, cc.TLSConfig, cc.Fallbacks = p.Host(), p.Port(), nil, nil
	if user != "" {
		cc.User, cc.Password = user, ""
	}
	cfg.MaxConns = maxConns
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		p.Close()
	})
	return pool, p
}

// withIDs gives each event a new ID, as a caller that wants to retry
// safely does.
func withIDs(events ...eventstore.NewEvent) []eventstore.NewEvent {
	for i := range events {
		events[i].ID = uuid.Must(uuid.NewV7())
	}
	return events
}

// storedCount is how many of ids are in the log (read directly, not
// through the proxy).
func storedCount(t *testing.T, db *pgtest.DB, ids ...uuid.UUID) int {
	t.Helper()
	var n int
	err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()+
		` WHERE event_id = ANY($1)`, ids).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func eventIDs(events []eventstore.Event) []uuid.UUID {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

// TestAppendLostAfterCommit: the connection is cut after the append's
// statement reached the server and before its answer reached the client,
// and the server commits. Append must return nil with the result it would
// have returned (promise 7), for store-assigned IDs and every expected
// version kind; the events are stored once.
func TestAppendLostAfterCommit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	pool, p := throughProxy(t, db.URL, "", 4)
	s := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	direct := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	ctx := context.Background()
	// pgx sends a CancelRequest when it loses a connection, which could
	// cancel the statement before it commits; across a real partition it
	// would not arrive.
	p.SetDropCancels(true)

	steps := []struct {
		expected eventstore.ExpectedVersion
		events   int
		version  int64
	}{
		{eventstore.NoStream, 1, 1},
		{eventstore.Exactly(1), 3, 4},
		{eventstore.Any, 1, 5},
		{eventstore.StreamExists, 2, 7},
		{eventstore.Any, 2, 9},
	}
	for i, st := range steps {
		events := make([]eventstore.NewEvent, st.events)
		for j := range events {
			events[j] = ev("Noted", fmt.Sprintf(`{"step":%d,"n":%d}`, i, j))
		}
		p.SetCut(&faultproxy.Cut{Types: "E", Upstream: faultproxy.UpstreamAfterReply, Times: 1})
		before := p.Cuts()
		res, err := s.Append(ctx, "lost-1", st.expected, events...)
		if p.Cuts() != before+1 {
			t.Fatalf("step %d: the proxy made no cut", i)
		}
		if err != nil {
			t.Fatalf("step %d: Append = %v after a cut once the server committed; want nil", i, err)
		}
		got := readStream(t, direct, "lost-1")
		if int64(len(got)) != st.version || res.Version != st.version {
			t.Fatalf("step %d: stream has %d events, result version %d; want %d", i, len(got), res.Version, st.version)
		}
		if last := got[len(got)-1]; res.Position != last.Position {
			t.Fatalf("step %d: result position %v, want the last event's %v", i, res.Position, last.Position)
		}
	}
}

// TestAppendLostWhileBackendRuns: the statement reached the server, which
// is still running it (it waits for a row lock) when the client learns
// that its connection is gone. "Not stored" is only true once that server
// process has ended: Append must end it (pg_terminate_backend, which the
// least-privilege role may do to its own connections) before it looks,
// and then report the error; the events must never appear afterwards.
func TestAppendLostWhileBackendRuns(t *testing.T) {
	t.Parallel()
	lostWhileBackendRuns(t, false)
}

// TestAppendDeadlineWhileBackendRuns: the same, when the connection is
// lost because the append's context ends while the server runs the
// statement: pgx then closes the socket (its default context handling),
// and the statement would still commit once the lock is released.
func TestAppendDeadlineWhileBackendRuns(t *testing.T) {
	t.Parallel()
	lostWhileBackendRuns(t, true)
}

func lostWhileBackendRuns(t *testing.T, deadline bool) {
	db := pgtest.New(t)
	app := db.AppPool(t)
	role := app.Config().ConnConfig.User
	pool, p := throughProxy(t, db.URL, role, 4)
	s := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	ctx := context.Background()
	if _, err := s.Append(ctx, "wait-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}

	// Hold the stream's row so that the append waits on the server.
	lock, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `SELECT 1 FROM `+pgx.Identifier{db.Schema, "streams"}.Sanitize()+` WHERE stream_id = 'wait-1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// pgx sends a CancelRequest when it loses a connection; across a
	// real partition it would not arrive either.
	p.SetDropCancels(true)
	actx := ctx
	if deadline {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
	} else {
		p.SetCut(&faultproxy.Cut{Types: "E", Upstream: faultproxy.UpstreamHold, Times: 1})
	}
	events := withIDs(ev("Noted", `{}`), ev("Noted", `{}`))
	_, err = s.Append(actx, "wait-1", eventstore.Exactly(1), events...)
	if err == nil || errors.Is(err, eventstore.ErrAmbiguous) {
		t.Fatalf("Append = %v; want the connection's error (not stored)", err)
	}
	if deadline && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append = %v; want an error matching context.DeadlineExceeded", err)
	}
	// Let the waiting statement go, were it still there, and wait until it
	// has run to its end; then until every server process of the role has
	// ended.
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitBackends := func(what, cond string) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`+cond, role).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d server processes of %s still %s after 30s", n, role, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitBackends("running a statement", ` AND state <> 'idle'`)
	pool.Close()
	app.Close()
	p.Close()
	waitBackends("connected", ``)
	if n := storedCount(t, db, events[0].ID, events[1].ID); n != 0 {
		t.Fatalf("Append returned %v, yet %d of its events are stored", err, n)
	}
}

// TestAppendRetryAfterCut: appends cut at the worst moment, with each of
// the server-side outcomes, then retried by the caller with the same
// events (same IDs): Append's first answer is nil exactly when the events
// are stored, the retry gives nil or ErrDuplicateEvent, and the log holds
// one copy.
func TestAppendRetryAfterCut(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	pool, p := throughProxy(t, db.URL, "", 4)
	s := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	ctx := context.Background()
	for i := range 24 {
		stream := fmt.Sprintf("retry-%d", i)
		events := withIDs(ev("A", `{}`), ev("B", `{}`))
		p.SetCut(&faultproxy.Cut{Types: "E", Upstream: faultproxy.Upstream(i % 3), Times: 1})
		_, err := s.Append(ctx, stream, eventstore.Any, events...)
		stored := storedCount(t, db, events[0].ID, events[1].ID)
		switch {
		case errors.Is(err, eventstore.ErrAmbiguous):
			t.Fatalf("%s: %v (the database was reachable)", stream, err)
		case err == nil && stored != 2, err != nil && stored != 0:
			t.Fatalf("%s: Append = %v, but %d of 2 events are stored", stream, err, stored)
		}
		_, rerr := s.Append(ctx, stream, eventstore.Any, events...)
		if rerr != nil && !errors.Is(rerr, eventstore.ErrDuplicateEvent) {
			t.Fatalf("%s: retry: %v", stream, rerr)
		}
		if err == nil && rerr == nil {
			t.Fatalf("%s: the first append and its retry both returned nil", stream)
		}
		if n := storedCount(t, db, events[0].ID, events[1].ID); n != 2 || len(readStream(t, s, stream)) != 2 {
			t.Fatalf("%s: after the retry %d of 2 events stored, stream of %d", stream, n, len(readStream(t, s, stream)))
		}
	}
}

// TestAppendAmbiguous: when the outcome cannot be learned before
// ResolveTimeout (the database unreachable), Append says so with an
// *AmbiguousError naming the IDs, and a retry with them is safe.
func TestAppendAmbiguous(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	pool, p := throughProxy(t, db.URL, "", 1)
	s := eventstore.New(pool, &eventstore.Config{Schema: db.Schema, ResolveTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if _, err := s.Append(ctx, "amb-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	p.SetRefuse(true)
	p.SetCut(&faultproxy.Cut{Types: "E", Upstream: faultproxy.UpstreamAfterReply, Times: 1})
	start := time.Now()
	_, err := s.Append(ctx, "amb-1", eventstore.Exactly(1), ev("Noted", `{}`))
	var amb *eventstore.AmbiguousError
	if !errors.As(err, &amb) || !errors.Is(err, eventstore.ErrAmbiguous) || len(amb.EventIDs) != 1 {
		t.Fatalf("Append = %v; want an *AmbiguousError with one event ID", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Append took %s with ResolveTimeout 300ms", d)
	}
	p.SetRefuse(false)
	retry := ev("Noted", `{}`)
	retry.ID = amb.EventIDs[0]
	if _, err := s.Append(ctx, "amb-1", eventstore.Any, retry); err != nil && !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("retry with the same ID: %v", err)
	}
	if n := storedCount(t, db, amb.EventIDs[0]); n != 1 {
		t.Fatalf("after the retry the event is stored %d times", n)
	}
}

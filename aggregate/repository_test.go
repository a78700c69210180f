package aggregate_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// 16 goroutines each run Update 50 times on one counter: every increment
// survives the races (exactly 800, in 800 gapless events), and the
// snapshots taken along the way agree with the events.
func TestUpdateConcurrentCounter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var stats loads
	repo := e.repo(&aggregate.Config{SnapshotEvery: 100, OnLoad: stats.record})
	ctx := context.Background()

	var calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16*50)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				errs <- repo.Update(ctx, "1", func(c *Counter) error {
					calls.Add(1)
					c.Raise(Incremented{By: 1})
					return nil
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	t.Logf("800 updates ran fn %d times", calls.Load())

	events := e.stream(t, "counter-1")
	if len(events) != 800 {
		t.Fatalf("stream has %d events, want 800", len(events))
	}
	for i, ev := range events {
		if ev.Version != int64(i+1) {
			t.Fatalf("event %d has version %d", i, ev.Version)
		}
	}
	c, err := repo.Load(ctx, "1")
	must(t, err)
	if c.Count != 800 || c.Version() != 800 {
		t.Fatalf("loaded count %d at version %d, want 800 at 800", c.Count, c.Version())
	}
	if st := stats.last(t); st.Snapshot != 800 || st.Events != 0 {
		t.Fatalf("load read snapshot %d plus %d events, want the snapshot at 800 and nothing after", st.Snapshot, st.Events)
	}
	plain, err := e.repo(nil).Load(ctx, "1") // no snapshots: from the events alone
	must(t, err)
	if plain.Count != 800 {
		t.Fatalf("count from events alone: %d", plain.Count)
	}
}

// With a snapshot every 100 events and 10,050 events, a load reads the
// snapshot at 10,000 and the 50 events after it.
func TestLoadReadsSnapshotPlusTail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var stats loads
	repo := e.repo(&aggregate.Config{SnapshotEvery: 100, OnLoad: stats.record})
	ctx := context.Background()

	c := repo.New("big")
	for range 100 {
		for range 100 {
			c.Raise(Incremented{By: 1})
		}
		must(t, repo.Save(ctx, c))
	}
	for range 50 {
		c.Raise(Incremented{By: 2})
	}
	must(t, repo.Save(ctx, c))

	snap, err := e.store.LoadSnapshot(ctx, "counter-big")
	must(t, err)
	if snap.Version != 10_000 || snap.SchemaVersion != 1 {
		t.Fatalf("stored snapshot at version %d, state version %d; want 10000, 1", snap.Version, snap.SchemaVersion)
	}
	got, err := repo.Load(ctx, "big")
	must(t, err)
	st := stats.last(t)
	if st.Snapshot != 10_000 || st.Events != 50 || st.Events >= 100 || st.IgnoredSnapshot != "" {
		t.Fatalf("load read %+v; want the snapshot at 10000 plus 50 events", st)
	}
	if got.Count != 10_100 || got.Version() != 10_050 {
		t.Fatalf("loaded count %d at version %d, want 10100 at 10050", got.Count, got.Version())
	}
}

// CounterV2 is the counter after its state struct changed shape: a
// snapshot of Counter decodes into it without error, but wrongly.
type CounterV2 struct {
	aggregate.Root
	Total int `json:"total"`
}

func (c *CounterV2) Apply(ev any) {
	if e, ok := ev.(Incremented); ok {
		c.Total += e.By
	}
}

// A snapshot whose state version is not the repository's is ignored: the
// load rebuilds from events, and the next snapshot is of the new version.
func TestStaleSnapshotIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var stats loads
	v1 := e.repo(&aggregate.Config{SnapshotEvery: 100, OnLoad: stats.record})
	c := v1.New("7")
	for range 150 {
		c.Raise(Incremented{By: 1})
	}
	must(t, v1.Save(ctx, c))
	_, err := v1.Load(ctx, "7")
	must(t, err)
	if st := stats.last(t); st.Snapshot != 150 {
		t.Fatalf("version 1 did not use its own snapshot: %+v", st)
	}

	v2 := aggregate.NewRepository(e.store, e.reg, func(string) *CounterV2 { return &CounterV2{} },
		&aggregate.Config{Category: "counter", SnapshotEvery: 100, SnapshotVersion: 2, OnLoad: stats.record})
	got, err := v2.Load(ctx, "7")
	must(t, err)
	st := stats.last(t)
	if st.Snapshot != 0 || st.Events != 150 || !strings.Contains(st.IgnoredSnapshot, "state version 1, want 2") {
		t.Fatalf("stale snapshot not ignored: %+v", st)
	}
	if got.Total != 150 || got.Version() != 150 {
		t.Fatalf("loaded total %d at version %d, want 150 at 150", got.Total, got.Version())
	}

	must(t, v2.Update(ctx, "7", func(c *CounterV2) error {
		for range 50 {
			c.Raise(Incremented{By: 1})
		}
		return nil
	}))
	got, err = v2.Load(ctx, "7")
	must(t, err)
	if st := stats.last(t); st.Snapshot != 200 || st.IgnoredSnapshot != "" || got.Total != 200 {
		t.Fatalf("after an update across 200: %+v, total %d", st, got.Total)
	}
}

// A snapshot that does not decode is ignored and logged.
func TestUndecodableSnapshotIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var stats loads
	repo := e.repo(&aggregate.Config{SnapshotEvery: 100, OnLoad: stats.record})
	must(t, repo.Update(ctx, "x", func(c *Counter) error { c.Raise(Incremented{By: 5}); return nil }))
	must(t, e.store.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "counter-x", Version: 1, SchemaVersion: 1, Data: []byte(`"not a counter"`)}))

	got, err := repo.Load(ctx, "x")
	must(t, err)
	if st := stats.last(t); st.Snapshot != 0 || st.Events != 1 || !strings.Contains(st.IgnoredSnapshot, "does not decode") {
		t.Fatalf("bad snapshot not ignored: %+v", st)
	}
	if got.Count != 5 {
		t.Fatalf("count %d, want 5", got.Count)
	}
	if !strings.Contains(e.log.String(), "snapshot ignored") {
		t.Fatalf("no warning logged; log: %q", e.log.String())
	}
}

var errRefused = errors.New("refused")

// When Update's fn returns an error, nothing is written, for an existing
// aggregate and for a new one, and the error comes back as is.
func TestUpdateFnErrorWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(&aggregate.Config{SnapshotEvery: 1})
	for range 3 {
		must(t, repo.Update(ctx, "1", func(c *Counter) error { c.Raise(Incremented{By: 1}); return nil }))
	}

	err := repo.Update(ctx, "1", func(c *Counter) error {
		c.Raise(Incremented{By: 100})
		c.Raise(Reset{})
		return errRefused
	})
	if err != errRefused {
		t.Fatalf("Update returned %v, want fn's error as is", err)
	}
	if n := len(e.stream(t, "counter-1")); n != 3 {
		t.Fatalf("stream has %d events after a refused update, want 3", n)
	}
	snap, err := e.store.LoadSnapshot(ctx, "counter-1")
	must(t, err)
	if snap.Version != 3 {
		t.Fatalf("snapshot moved to %d", snap.Version)
	}

	err = repo.Update(ctx, "new", func(c *Counter) error {
		if c.Version() != 0 {
			t.Errorf("new aggregate at version %d", c.Version())
		}
		c.Raise(Incremented{By: 1})
		return errRefused
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("Update returned %v", err)
	}
	if _, err := e.store.StreamVersion(ctx, "counter-new"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("refused creation wrote the stream: %v", err)
	}

	// An fn that raises nothing writes nothing either.
	must(t, repo.Update(ctx, "1", func(*Counter) error { return nil }))
	if n := len(e.stream(t, "counter-1")); n != 3 {
		t.Fatalf("stream has %d events after an empty update", n)
	}
}

// Loading an aggregate that has no events is ErrNotFound, which is also
// eventstore.ErrStreamNotFound; Update creates it.
func TestNotFoundAndCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(&aggregate.Config{SnapshotEvery: 10})
	_, err := repo.Load(ctx, "nope")
	if !errors.Is(err, aggregate.ErrNotFound) || !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("Load of an unknown aggregate: %v", err)
	}
	must(t, repo.Update(ctx, "nope", func(c *Counter) error { c.Raise(Incremented{By: 4}); return nil }))
	c, err := repo.Load(ctx, "nope")
	must(t, err)
	if c.Count != 4 || c.Version() != 1 || c.ID() != "nope" {
		t.Fatalf("created %+v at version %d", c, c.Version())
	}
}

// Two writers of one loaded version: the first save wins, the second gets
// ErrConflict with the versions and writes nothing; creating an existing
// aggregate is a conflict too.
func TestSaveConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(nil)
	must(t, repo.Update(ctx, "1", func(c *Counter) error { c.Raise(Incremented{By: 1}); return nil }))

	a, err := repo.Load(ctx, "1")
	must(t, err)
	b, err := repo.Load(ctx, "1")
	must(t, err)
	a.Raise(Incremented{By: 10})
	b.Raise(Incremented{By: 20})
	must(t, repo.Save(ctx, a))
	err = repo.Save(ctx, b)
	var ce *eventstore.ConflictError
	if !errors.Is(err, eventstore.ErrConflict) || !errors.As(err, &ce) || ce.Expected != eventstore.Exactly(1) || ce.Actual != 2 {
		t.Fatalf("second save: %v", err)
	}
	if len(b.Pending()) != 1 || b.Version() != 1 {
		t.Fatalf("losing aggregate changed: version %d, %d pending", b.Version(), len(b.Pending()))
	}
	got, err := repo.Load(ctx, "1")
	must(t, err)
	if got.Count != 11 || got.Version() != 2 {
		t.Fatalf("count %d at version %d, want 11 at 2", got.Count, got.Version())
	}

	dup := repo.New("1")
	dup.Raise(Incremented{By: 1})
	if err := repo.Save(ctx, dup); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("creating an existing aggregate: %v", err)
	}
}

// bump appends an event to the counter behind the repository's back: a
// competing writer.
func (e *env) bump(tb testing.TB, id string) {
	tb.Helper()
	ev, err := e.reg.Encode(Incremented{By: 1000})
	must(tb, err)
	_, err = e.store.Append(context.Background(), "counter-"+id, eventstore.Any, ev)
	must(tb, err)
}

// Update reruns fn on each conflict; MaxRetries caps the reruns and then
// the conflict error is returned, with nothing of fn's written.
func TestUpdateMaxRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(&aggregate.Config{MaxRetries: 2})
	calls := 0
	err := repo.Update(ctx, "1", func(c *Counter) error {
		calls++
		e.bump(t, "1") // always lose the race
		c.Raise(Incremented{By: 1})
		return nil
	})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("Update: %v, want a conflict", err)
	}
	if calls != 3 {
		t.Fatalf("fn ran %d times, want 1 + 2 retries", calls)
	}
	for _, ev := range e.stream(t, "counter-1") {
		if !strings.Contains(string(ev.Data), "1000") {
			t.Fatalf("fn's event was written: %s", ev.Data)
		}
	}

	// A conflict that clears is retried through.
	calls = 0
	must(t, repo.Update(ctx, "1", func(c *Counter) error {
		calls++
		if calls <= 2 {
			e.bump(t, "1")
		}
		c.Raise(Reset{})
		return nil
	}))
	if calls != 3 {
		t.Fatalf("fn ran %d times, want 3", calls)
	}
}

// Without MaxRetries, Update retries until the context ends, and then
// says so with both the context's error and the last conflict.
func TestUpdateRetriesUntilContextEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	repo := e.repo(&aggregate.Config{RetryDelay: time.Hour, MaxRetryDelay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := repo.Update(ctx, "1", func(c *Counter) error {
		e.bump(t, "1")
		c.Raise(Incremented{By: 1})
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update: %v, want the context's error", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatalf("Update did not stop when the context ended")
	}

	// Ended while waiting after a conflict: both errors match.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	err = repo.Update(ctx2, "2", func(c *Counter) error {
		e.bump(t, "2")
		c.Raise(Incremented{By: 1})
		time.AfterFunc(50*time.Millisecond, cancel2) // after the save, during the wait
		return nil
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("Update: %v, want the context's error and the conflict", err)
	}
}

// Correlation and causation IDs flow from the context and from per-call
// options into every event's metadata.
func TestMetadataFlows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	repo := e.repo(nil)
	ctx := aggregate.WithMetadata(context.Background(), eventstore.Metadata{
		CorrelationID: "req-1", Values: map[string]string{"user": "ann"},
	})
	must(t, repo.Update(ctx, "1", func(c *Counter) error {
		c.Raise(Incremented{By: 1})
		c.Raise(Incremented{By: 2})
		return nil
	}, aggregate.Opts{Metadata: eventstore.Metadata{CausationID: "cmd-7", Values: map[string]string{"tenant": "t1"}}}))

	inner := aggregate.WithMetadata(ctx, eventstore.Metadata{CausationID: "cmd-8", Values: map[string]string{"user": "bob"}})
	c, err := repo.Load(inner, "1")
	must(t, err)
	c.Raise(Reset{})
	must(t, repo.Save(inner, c))
	c.Raise(Incremented{By: 3})
	must(t, repo.Save(inner, c, aggregate.Opts{Metadata: eventstore.Metadata{CorrelationID: "req-2"}}))

	want := []eventstore.Metadata{
		{CorrelationID: "req-1", CausationID: "cmd-7", Values: map[string]string{"user": "ann", "tenant": "t1"}},
		{CorrelationID: "req-1", CausationID: "cmd-7", Values: map[string]string{"user": "ann", "tenant": "t1"}},
		{CorrelationID: "req-1", CausationID: "cmd-8", Values: map[string]string{"user": "bob"}},
		{CorrelationID: "req-2", CausationID: "cmd-8", Values: map[string]string{"user": "bob"}},
	}
	events := e.stream(t, "counter-1")
	if len(events) != len(want) {
		t.Fatalf("%d events, want %d", len(events), len(want))
	}
	for i, ev := range events {
		if got := string(mustJSON(t, ev.Metadata)); got != string(mustJSON(t, want[i])) {
			t.Errorf("event %d metadata %s, want %s", i+1, got, mustJSON(t, want[i]))
		}
	}
	if md := aggregate.MetadataFrom(ctx); md.CausationID != "" || md.Values["user"] != "ann" {
		t.Errorf("WithMetadata changed its parent context: %+v", md)
	}
}

// LoadAt replays up to a version or a time.
func TestLoadAt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(&aggregate.Config{SnapshotEvery: 1}) // LoadAt must not use the snapshot
	for i := 1; i <= 5; i++ {
		must(t, repo.Update(ctx, "1", func(c *Counter) error { c.Raise(Incremented{By: i}); return nil }))
	}
	c, err := repo.LoadAt(ctx, "1", aggregate.At{Version: 3})
	must(t, err)
	if c.Count != 1+2+3 || c.Version() != 3 {
		t.Fatalf("at version 3: count %d at %d", c.Count, c.Version())
	}
	c, err = repo.LoadAt(ctx, "1", aggregate.At{Version: 99})
	must(t, err)
	if c.Count != 15 || c.Version() != 5 {
		t.Fatalf("at version 99: count %d at %d", c.Count, c.Version())
	}

	events := e.stream(t, "counter-1")
	if !events[1].RecordedAt.Before(events[2].RecordedAt) || !events[0].RecordedAt.Before(events[1].RecordedAt) {
		t.Fatalf("events of separate transactions recorded at the same time: %v", events)
	}
	c, err = repo.LoadAt(ctx, "1", aggregate.At{Time: events[1].RecordedAt})
	must(t, err)
	if c.Count != 3 || c.Version() != 2 {
		t.Fatalf("at the second event's time: count %d at %d", c.Count, c.Version())
	}
	c, err = repo.LoadAt(ctx, "1", aggregate.At{Time: events[3].RecordedAt, Version: 2})
	must(t, err)
	if c.Version() != 2 {
		t.Fatalf("both bounds: version %d, want the earlier bound", c.Version())
	}
	_, err = repo.LoadAt(ctx, "1", aggregate.At{Time: events[0].RecordedAt.Add(-time.Microsecond)})
	if !errors.Is(err, aggregate.ErrNotFound) {
		t.Fatalf("before the first event: %v", err)
	}
}

// SaveTx and UpdateTx write in the caller's transaction: a rollback leaves
// nothing, snapshots included; a conflict in UpdateTx is returned without
// retry and leaves the transaction usable.
func TestTx(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(&aggregate.Config{SnapshotEvery: 2})

	tx, err := e.db.Pool.Begin(ctx)
	must(t, err)
	must(t, repo.UpdateTx(ctx, tx, "1", func(c *Counter) error {
		c.Raise(Incremented{By: 1})
		c.Raise(Incremented{By: 1})
		return nil
	}))
	c, err := repo.LoadTx(ctx, tx, "1")
	must(t, err)
	if c.Count != 2 {
		t.Fatalf("inside the transaction: count %d", c.Count)
	}
	must(t, tx.Rollback(ctx))
	if _, err := e.store.StreamVersion(ctx, "counter-1"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("rolled-back UpdateTx wrote: %v", err)
	}
	if _, err := e.store.LoadSnapshot(ctx, "counter-1"); !errors.Is(err, eventstore.ErrSnapshotNotFound) {
		t.Fatalf("rolled-back snapshot stored: %v", err)
	}

	must(t, pgx.BeginFunc(ctx, e.db.Pool, func(tx pgx.Tx) error {
		c := repo.New("1")
		c.Raise(Incremented{By: 1})
		c.Raise(Incremented{By: 1})
		return repo.SaveTx(ctx, tx, c)
	}))
	if snap, err := e.store.LoadSnapshot(ctx, "counter-1"); err != nil || snap.Version != 2 {
		t.Fatalf("committed snapshot: %+v, %v", snap, err)
	}

	tx, err = e.db.Pool.Begin(ctx)
	must(t, err)
	defer tx.Rollback(ctx)
	calls := 0
	err = repo.UpdateTx(ctx, tx, "1", func(c *Counter) error {
		calls++
		e.bump(t, "1")
		c.Raise(Reset{})
		return nil
	})
	if !errors.Is(err, eventstore.ErrConflict) || calls != 1 {
		t.Fatalf("UpdateTx: %v after %d calls, want one conflict", err, calls)
	}
	must(t, tx.Commit(ctx))
	c, err = repo.Load(ctx, "1")
	must(t, err)
	if c.Count != 1002 || c.Version() != 3 {
		t.Fatalf("count %d at version %d, want 1002 at 3", c.Count, c.Version())
	}
}

// A transaction that wrote before another writer appended to the
// aggregate's stream cannot append after that writer in the log: UpdateTx
// loads the new version (read committed) but its save is refused with
// ErrOutOfOrder, nothing of it is written, and the whole transaction run
// again succeeds.
func TestUpdateTxOutOfOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(nil)
	e.bump(t, "1")
	increment := func(c *Counter) error { c.Raise(Incremented{By: 1}); return nil }
	run := func(bumpBetween bool) error {
		return pgx.BeginFunc(ctx, e.db.Pool, func(tx pgx.Tx) error {
			// The transaction gets its ID by writing another aggregate.
			if err := repo.UpdateTx(ctx, tx, "2", increment); err != nil {
				return err
			}
			if bumpBetween {
				e.bump(t, "1") // a later transaction appends and commits
			}
			return repo.UpdateTx(ctx, tx, "1", increment)
		})
	}
	if err := run(true); !errors.Is(err, eventstore.ErrOutOfOrder) || errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("UpdateTx after a later writer: %v, want ErrOutOfOrder", err)
	}
	if _, err := e.store.StreamVersion(ctx, "counter-2"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the refused transaction wrote: %v", err)
	}
	must(t, run(false))
	c, err := repo.Load(ctx, "1")
	must(t, err)
	if c.Count != 2001 || c.Version() != 3 {
		t.Fatalf("count %d at version %d, want 2001 at 3", c.Count, c.Version())
	}
}

// A snapshot that cannot be saved does not fail the save: the events are
// stored and the failure is logged, on the pool and in a transaction.
func TestSnapshotFailureDoesNotFailSave(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(&aggregate.Config{SnapshotEvery: 1})
	_, err := e.db.Pool.Exec(ctx, `DROP TABLE `+pgx.Identifier{e.db.Schema, "snapshots"}.Sanitize())
	must(t, err)

	c := repo.New("1")
	c.Raise(Incremented{By: 1})
	must(t, repo.Save(ctx, c))
	must(t, pgx.BeginFunc(ctx, e.db.Pool, func(tx pgx.Tx) error {
		c.Raise(Incremented{By: 1})
		return repo.SaveTx(ctx, tx, c)
	}))
	if v, err := e.store.StreamVersion(ctx, "counter-1"); err != nil || v != 2 {
		t.Fatalf("stream at %d (%v), want 2", v, err)
	}
	if n := strings.Count(e.log.String(), "snapshot not saved"); n != 2 {
		t.Fatalf("%d warnings logged, want 2; log: %s", n, e.log.String())
	}
}

// An event the registry refuses fails the save before anything is
// written.
func TestSaveRefusedEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(nil)
	c := repo.New("1")
	c.Raise(Incremented{By: 1})
	c.Raise(Unregistered{})
	if err := repo.Save(ctx, c); !errors.Is(err, schema.ErrUnknownType) {
		t.Fatalf("unregistered event: %v", err)
	}
	c = repo.New("1")
	c.Raise(Incremented{By: 1})
	c.Raise(Incremented{By: -1})
	if err := repo.Save(ctx, c); !errors.Is(err, eventstore.ErrInvalidEvent) || !strings.Contains(err.Error(), "/by") {
		t.Fatalf("invalid event: %v", err)
	}
	if _, err := e.store.StreamVersion(ctx, "counter-1"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("refused save wrote: %v", err)
	}
}

// Load upcasts stored events of older versions through the registry.
func TestLoadUpcasts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.store.Append(ctx, "counter-old", eventstore.NoStream,
		eventstore.NewEvent{Type: "Incremented", SchemaVersion: 1, Data: []byte(`{"amount":7}`)},
		eventstore.NewEvent{Type: "Incremented", SchemaVersion: 2, Data: []byte(`{"by":1}`)})
	must(t, err)
	c, err := e.repo(nil).Load(ctx, "old")
	must(t, err)
	if c.Count != 8 {
		t.Fatalf("count %d, want 8", c.Count)
	}
}

// Stream IDs are the category and the ID; the category defaults to the
// type's name and must not contain '-'.
func TestStreamIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if got := e.repo(nil).StreamID("42"); got != "counter-42" {
		t.Fatalf("default stream ID %q", got)
	}
	custom := e.repo(&aggregate.Config{Category: "tally"})
	must(t, custom.Update(ctx, "42", func(c *Counter) error { c.Raise(Incremented{By: 1}); return nil }))
	if v, err := e.store.StreamVersion(ctx, "tally-42"); err != nil || v != 1 {
		t.Fatalf("custom category stream: %d, %v", v, err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "without '-'") {
			t.Fatalf("category with '-': recovered %v", r)
		}
	}()
	e.repo(&aggregate.Config{Category: "a-b"})
}

// Raise refuses aggregates that are not wired and pointer events.
func TestRaiseMisuse(t *testing.T) {
	t.Parallel()
	panics := func(name string, f func(), want string) {
		t.Helper()
		defer func() {
			t.Helper()
			r := recover()
			if s, _ := r.(string); !strings.Contains(s, want) {
				t.Errorf("%s: recovered %v, want a panic saying %q", name, r, want)
			}
		}()
		f()
	}
	panics("struct literal", func() { (&Counter{}).Raise(Incremented{By: 1}) }, "not wired")
	c := aggregate.Rehydrate(&Counter{}, "1")
	panics("pointer event", func() { c.Raise(&Incremented{By: 1}) }, "not pointers")
	panics("nil event", func() { c.Raise(nil) }, "Raise(nil)")

	c = aggregate.Rehydrate(&Counter{}, "1", Incremented{By: 2}, Incremented{By: 3})
	c.Raise(Incremented{By: 4})
	if c.Count != 9 || c.Version() != 2 || len(c.Pending()) != 1 || c.ID() != "1" {
		t.Fatalf("rehydrated: count %d, version %d, %d pending", c.Count, c.Version(), len(c.Pending()))
	}
}

// A long stream is decoded by a goroutine of the load: the state is the
// same as decoding inline, a bound stops it midway, a bad event fails the
// load with its version, and the goroutine never outlives the load.
func TestLongLoad(t *testing.T) { // not parallel: it counts goroutines
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(nil)
	c := repo.New("long")
	for i := range 1000 {
		c.Raise(Incremented{By: i})
	}
	must(t, repo.Save(ctx, c))
	got, err := repo.Load(ctx, "long")
	must(t, err)
	if got.Count != 999*1000/2 || got.Version() != 1000 {
		t.Fatalf("count %d at version %d", got.Count, got.Version())
	}
	got, err = repo.LoadAt(ctx, "long", aggregate.At{Version: 700})
	must(t, err)
	if got.Count != 699*700/2 || got.Version() != 700 {
		t.Fatalf("at 700: count %d at version %d", got.Count, got.Version())
	}

	raw := eventstore.New(e.db.Pool, &eventstore.Config{Schema: e.db.Schema}) // no validator
	_, err = raw.Append(ctx, "counter-long", eventstore.Exactly(1000), eventstore.NewEvent{Type: "Mystery", Data: []byte(`{}`)})
	must(t, err)
	must(t, repo.Update(ctx, "other", func(c *Counter) error { c.Raise(Incremented{By: 1}); return nil }))
	c, err = repo.Load(ctx, "long")
	if !errors.Is(err, schema.ErrUnknownType) || !strings.Contains(err.Error(), "event 1001") || c != nil {
		t.Fatalf("load past an unknown event: %v", err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "startDecoder") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a decoder goroutine outlived its load:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fragile is a counter whose Apply panics at its 300th event: a bug in a
// user's Apply.
type fragile struct {
	aggregate.Root
	n int
}

func (f *fragile) Apply(any) {
	if f.n++; f.n == 300 {
		panic("apply bug at 300")
	}
}

// A panic in Apply reaches the caller of Load however long the stream, as
// it does for a short one, so the caller's recover (an HTTP server's, say)
// sees it; it never crashes the process from the load's decoder goroutine.
func TestApplyPanicReachesLoader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	repo := e.repo(nil)
	c := repo.New("long")
	for range 1000 {
		c.Raise(Incremented{By: 1})
	}
	must(t, repo.Save(ctx, c))
	fragiles := aggregate.NewRepository(e.store, e.reg, func(string) *fragile { return &fragile{} }, &aggregate.Config{Category: "counter"})
	got := func() (p any) {
		defer func() { p = recover() }()
		_, _ = fragiles.Load(ctx, "long")
		return nil
	}()
	if got != "apply bug at 300" {
		t.Fatalf("recovered %v, want the Apply panic", got)
	}
}

// Without Config.Logger, a repository's warnings go to the store's logger
// (eventstore.Config.Logger), like every package built on the store.
func TestWarningsGoToStoreLogger(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var log syncBuffer
	store := eventstore.New(e.db.Pool, &eventstore.Config{Schema: e.db.Schema, Validator: e.reg, NotifyInterval: -1,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	repo := aggregate.NewRepository(store, e.reg, newCounter, &aggregate.Config{SnapshotEvery: 1})
	must(t, repo.Update(ctx, "x", func(c *Counter) error { c.Raise(Incremented{By: 5}); return nil }))
	must(t, store.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "counter-x", Version: 1, SchemaVersion: 1, Data: []byte(`"not a counter"`)}))
	_, err := repo.Load(ctx, "x")
	must(t, err)
	if !strings.Contains(log.String(), "snapshot ignored") {
		t.Fatalf("warning not in the store's log: %q", log.String())
	}
}

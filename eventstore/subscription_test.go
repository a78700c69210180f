package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// readModel is a Postgres read model written by a subscription handler in
// the subscription's transaction: one row per event (a primary key, so a
// doubled effect fails loudly) and a per-stream last version that must
// grow by one each time.
type readModel struct {
	db    *pgtest.DB
	table string
}

func newReadModel(t *testing.T, db *pgtest.DB) *readModel {
	t.Helper()
	rm := &readModel{db: db, table: pgx.Identifier{db.Schema, "rm_events"}.Sanitize()}
	_, err := db.Pool.Exec(context.Background(), `CREATE TABLE `+rm.table+` (event_id uuid PRIMARY KEY, stream_id text, version bigint);
		CREATE TABLE `+pgx.Identifier{db.Schema, "rm_streams"}.Sanitize()+` (stream_id text PRIMARY KEY, version bigint)`)
	if err != nil {
		t.Fatal(err)
	}
	return rm
}

func (rm *readModel) handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	streams := pgx.Identifier{rm.db.Schema, "rm_streams"}.Sanitize()
	for _, e := range events {
		if _, err := tx.Exec(ctx, `INSERT INTO `+rm.table+` VALUES ($1, $2, $3)`, e.ID, e.StreamID, e.Version); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO `+streams+` VALUES ($1, $2)
			ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version WHERE `+streams+`.version = EXCLUDED.version - 1`, e.StreamID, e.Version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("stream %s out of order at version %d", e.StreamID, e.Version)
		}
	}
	return nil
}

func (rm *readModel) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := rm.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+rm.table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor is the module's one polling wait (internal/pgtest), under the
// name this package's tests call it by.
var waitFor = pgtest.WaitFor

func appendN(t *testing.T, s *eventstore.Store, streams, perStream int, typ string) {
	t.Helper()
	for i := range perStream {
		for k := range streams {
			if _, err := s.Append(context.Background(), fmt.Sprintf("item-%d", k), eventstore.Any, ev(typ, fmt.Sprintf(`{"i":%d}`, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func run(t *testing.T, sub *eventstore.Subscription, h eventstore.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestSubscriptionCatchUpThenLive(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	appendN(t, s, 10, 30, "Tick")
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", BatchSize: 50, PollInterval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, sub, rm.handle)
	waitFor(t, "catch-up", 60*time.Second, func() bool { return rm.count(t) == 300 })

	// Live: with a 30s poll interval, only the wake-up can deliver quickly.
	start := time.Now()
	appendN(t, s, 10, 1, "Tick")
	waitFor(t, "live events", 60*time.Second, func() bool { return rm.count(t) == 310 })
	t.Logf("live delivery in %v", time.Since(start))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st, err := s.SubscriptionStatuses(context.Background(), "rm")
	if err != nil || len(st) != 1 {
		t.Fatalf("%+v %v", st, err)
	}
	if st[0].EventsHandled != 310 || st[0].Lag != 0 || st[0].State != "stopped" || st[0].Owner != "" {
		t.Fatalf("status %+v", st[0])
	}
	// Stopped: new events show as lag.
	appendN(t, s, 2, 1, "Tick")
	st, _ = s.SubscriptionStatuses(context.Background(), "rm")
	if st[0].Lag != 2 || st[0].LagTime <= 0 {
		t.Fatalf("lag while stopped: %+v", st[0])
	}
}

// A handler error rolls back its batch's effects with the checkpoint: the
// read model never holds an effect twice or misses one.
func TestSubscriptionTransientFailuresExactlyOnce(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	appendN(t, s, 5, 40, "Tick")
	var calls atomic.Int64
	flaky := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		if err := rm.handle(ctx, tx, events); err != nil {
			return err
		}
		if calls.Add(1)%3 == 0 {
			return errors.New("flaky after writing")
		}
		return nil
	}
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", BatchSize: 7, RetryBackoff: time.Millisecond, MaxAttempts: 10})
	run(t, sub, flaky)
	waitFor(t, "all events", 60*time.Second, func() bool { return rm.count(t) == 200 })
	if dl, _ := s.DeadLetters(context.Background(), "rm"); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// Two processes (owners) share a partitioned subscription: each takes a fair
// share, together they handle every event once and each stream in order;
// when one stops, the other takes over its partitions.
func TestSubscriptionPartitionsAndTakeover(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	cfg := eventstore.SubscriptionConfig{Name: "rm", Partitions: 4, BatchSize: 20, LeaseTTL: time.Second, PollInterval: 50 * time.Millisecond}
	cfg.Owner = "A"
	subA, _ := s.Subscription(cfg)
	cfg.Owner = "B"
	subB, _ := s.Subscription(cfg)
	var byA, byB atomic.Int64
	count := func(n *atomic.Int64) eventstore.Handler {
		return func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
			n.Add(int64(len(events)))
			return rm.handle(ctx, tx, events)
		}
	}
	stopA := run(t, subA, count(&byA))
	run(t, subB, count(&byB))
	owners := func() map[string]int {
		st, err := s.SubscriptionStatuses(context.Background(), "rm")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for _, p := range st {
			m[p.Owner]++
		}
		return m
	}
	waitFor(t, "a fair split", 30*time.Second, func() bool { o := owners(); return o["A"] == 2 && o["B"] == 2 })
	appendN(t, s, 20, 10, "Tick")
	waitFor(t, "all events", 60*time.Second, func() bool { return rm.count(t) == 200 })
	if byA.Load() == 0 || byB.Load() == 0 {
		t.Fatalf("work not shared: A %d, B %d", byA.Load(), byB.Load())
	}
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "takeover", 30*time.Second, func() bool { return owners()["B"] == 4 })
	appendN(t, s, 20, 5, "Tick")
	waitFor(t, "events after takeover", 60*time.Second, func() bool { return rm.count(t) == 300 })
}

// A poison event is retried, then parked; later events of its stream are
// parked behind it while other streams go on; a retry after the fix runs
// them in order.
func TestSubscriptionParksPoisonInStreamOrder(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx := context.Background()
	var fixed atomic.Bool
	var attempts atomic.Int64
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		for _, e := range events {
			if e.Type == "Poison" && !fixed.Load() {
				attempts.Add(1)
				return fmt.Errorf("cannot handle %s", e.Type)
			}
		}
		return rm.handle(ctx, tx, events)
	}
	for _, a := range []struct{ stream, typ string }{
		{"bad-1", "Fine"}, {"good-1", "Fine"}, {"bad-1", "Poison"}, {"good-1", "Fine"}, {"bad-1", "Fine"}, {"good-2", "Fine"}, {"bad-1", "Fine"},
	} {
		if _, err := s.Append(ctx, a.stream, eventstore.Any, ev(a.typ, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", MaxAttempts: 3, RetryBackoff: time.Millisecond, PollInterval: 50 * time.Millisecond})
	run(t, sub, h)
	waitFor(t, "good events and parking", 60*time.Second, func() bool {
		dl, _ := s.DeadLetters(ctx, "rm")
		return rm.count(t) == 4 && len(dl) == 3
	})
	dl, _ := s.DeadLetters(ctx, "rm")
	if dl[0].Attempts != 3 || dl[0].Type != "Poison" || dl[0].BlockedBy != 0 || dl[1].BlockedBy != dl[0].ID || dl[2].BlockedBy != dl[0].ID {
		t.Fatalf("dead letters: %+v", dl)
	}
	st, _ := s.SubscriptionStatuses(ctx, "rm")
	if st[0].DeadLetters != 3 || st[0].Lag != 0 {
		t.Fatalf("status %+v", st[0])
	}
	// A new event of the parked stream is parked too, in order.
	if _, err := s.Append(ctx, "bad-1", eventstore.Any, ev("Fine", `{}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fourth parked event", 60*time.Second, func() bool { dl, _ := s.DeadLetters(ctx, "rm"); return len(dl) == 4 })

	// A retry while the handler still fails keeps the whole stream parked
	// (none of its later events may overtake the poison) and counts the
	// attempt.
	if n, err := s.RetryDeadLetters(ctx, "rm", "bad-1"); err != nil || n != 4 {
		t.Fatalf("retry: %d %v", n, err)
	}
	waitFor(t, "failed retry", 60*time.Second, func() bool {
		dl, _ := s.DeadLetters(ctx, "rm")
		return len(dl) == 4 && dl[0].Attempts == 4 && !dl[0].RetryRequested && !dl[3].RetryRequested
	})
	time.Sleep(200 * time.Millisecond) // several polls: nothing of bad-1 may run
	if n := rm.count(t); n != 4 {
		t.Fatalf("%d events handled while bad-1 is parked, want 4", n)
	}

	fixed.Store(true)
	if n, err := s.RetryDeadLetters(ctx, "rm", ""); err != nil || n != 4 {
		t.Fatalf("retry: %d %v", n, err)
	}
	waitFor(t, "retried events", 60*time.Second, func() bool { return rm.count(t) == 8 })
	if dl, _ := s.DeadLetters(ctx, "rm"); len(dl) != 0 {
		t.Fatalf("dead letters left: %+v", dl)
	}
	// The stream flows normally again (rm.handle checks the version order).
	if _, err := s.Append(ctx, "bad-1", eventstore.Any, ev("Fine", `{}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "event after unparking", 60*time.Second, func() bool { return rm.count(t) == 9 })
}

func TestSubscriptionStopPolicy(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	appendN(t, s, 1, 3, "Poison")
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", MaxAttempts: 2, RetryBackoff: time.Millisecond, OnFailure: eventstore.Stop})
	boom := errors.New("boom")
	err := sub.Run(context.Background(), func(context.Context, pgx.Tx, []eventstore.Event) error { return boom })
	var he *eventstore.HandlerError
	if !errors.As(err, &he) || !errors.Is(err, boom) || he.Attempts != 2 || he.Event.Version != 1 {
		t.Fatalf("Run returned %v", err)
	}
	st, _ := s.SubscriptionStatuses(context.Background(), "rm")
	if st[0].State != "failing" || st[0].LastError == "" || !st[0].Checkpoint.IsZero() {
		t.Fatalf("status %+v", st[0])
	}
}

// Reset with a read-model wipe in the same transaction replays everything,
// while the subscription runs.
func TestSubscriptionResetReplays(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	appendN(t, s, 4, 25, "Tick")
	var handled atomic.Int64
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", BatchSize: 10, PollInterval: 50 * time.Millisecond})
	run(t, sub, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		handled.Add(int64(len(events)))
		return rm.handle(ctx, tx, events)
	})
	waitFor(t, "first pass", 60*time.Second, func() bool { return rm.count(t) == 100 })
	err := s.ResetSubscription(context.Background(), "rm", eventstore.Position{}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `TRUNCATE `+rm.table+`, `+pgx.Identifier{db.Schema, "rm_streams"}.Sanitize())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replay", 60*time.Second, func() bool { return handled.Load() >= 200 && rm.count(t) == 100 })
	if err := s.ResetSubscription(context.Background(), "nope", eventstore.Position{}, nil); err == nil {
		t.Fatal("reset of an unknown subscription succeeded")
	}
}

func TestSubscriptionStopWhenCaughtUp(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	appendN(t, s, 8, 20, "Tick")
	var batches atomic.Int64
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", Partitions: 3, BatchSize: 16, StopWhenCaughtUp: true,
		OnBatch: func(b eventstore.BatchInfo) { batches.Add(1) }})
	// Other tests' open transactions may hold the horizon: the catch-up may
	// stop early, so run it until everything is in.
	deadline := time.Now().Add(60 * time.Second)
	for rm.count(t) < 160 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := sub.Run(ctx, rm.handle)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if rm.count(t) != 160 || batches.Load() == 0 {
		t.Fatalf("caught up %d events in %d batches", rm.count(t), batches.Load())
	}
}

func TestSubscriptionPartitionCountChange(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", Partitions: 2, StopWhenCaughtUp: true})
	if err := sub.Run(context.Background(), func(context.Context, pgx.Tx, []eventstore.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	sub3, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", Partitions: 3})
	err := sub3.Run(context.Background(), func(context.Context, pgx.Tx, []eventstore.Event) error { return nil })
	if !errors.Is(err, eventstore.ErrPartitionsChanged) {
		t.Fatalf("want ErrPartitionsChanged, got %v", err)
	}
}

// A subscription to a rare category among many other events gets its
// events, and its checkpoint moves past the others with its next batch.
func TestSubscriptionFilteredRareCategory(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	appendN(t, s, 3, 100, "Tick") // item-0..2: 300 events of another category
	for i := range 3 {
		if _, err := s.Append(context.Background(), "rare-1", eventstore.Any, ev("Rare", fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
		appendN(t, s, 2, 20, "Tick")
	}
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "rare", Categories: []string{"rare"}, BatchSize: 4, PollInterval: 50 * time.Millisecond})
	run(t, sub, rm.handle)
	waitFor(t, "the rare events", 60*time.Second, func() bool { return rm.count(t) == 3 })
	st, err := s.SubscriptionStatuses(context.Background(), "rare")
	if err != nil || st[0].Lag != 0 || st[0].EventsHandled != 3 {
		t.Fatalf("status %+v %v", st, err)
	}
}

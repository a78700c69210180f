package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// A reset to the very checkpoint a batch in flight started from (here: a
// reset to the start while the first batch is being handled) must still
// fence that batch: its transaction rolls back and the events are handled
// again after the reset. The checkpoint alone cannot tell the two apart;
// the fence counts resets too.
func TestResetToTheInFlightCheckpointFencesTheBatch(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if _, err := s.Append(ctx, "r-1", eventstore.Any, ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "reset-race", PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	inFlight, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		if calls.Add(1) == 1 {
			// Hold the first batch until the reset committed, then write.
			// (A batch that has written holds its partition's row until it
			// commits: a reset waits for it, then clears what it wrote; see
			// TestResetWithDeleteDoesNotDoubleApply.)
			close(inFlight)
			<-release
			return rm.handle(ctx, tx, events)
		}
		return rm.handle(ctx, tx, events)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, h) }()
	<-inFlight
	// Wipe the read model and go back to the start, where the batch in
	// flight started from.
	err = s.ResetSubscription(ctx, "reset-race", eventstore.Position{}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM `+rm.table+`; DELETE FROM `+pgx.Identifier{db.Schema, "rm_streams"}.Sanitize())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	waitFor(t, "the events handled again after the reset", 30*time.Second, func() bool { return calls.Load() >= 2 && rm.count(t) == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := rm.count(t); n != 3 {
		t.Fatalf("read model has %d events, want 3", n)
	}
}

// A reset whose function clears the read model with DELETE (what the
// least-privilege role can do) while the subscription keeps committing
// batches of concurrent appends: a batch that commits after the DELETE's
// snapshot must not keep its rows, or its events are applied twice after
// the replay. The reset function takes its time (as a DELETE of a big
// table does) so that many batches try to commit meanwhile.
func TestResetWithDeleteDoesNotDoubleApply(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	applied := pgx.Identifier{db.Schema, "applied"}.Sanitize()
	// No key: an event applied twice shows as two rows.
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+applied+` (event_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "reset-delete", BatchSize: 5, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var batches atomic.Int64
	stopSub := run(t, sub, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		for _, e := range events {
			if _, err := tx.Exec(ctx, `INSERT INTO `+applied+` VALUES ($1)`, e.ID); err != nil {
				return err
			}
		}
		batches.Add(1)
		return nil
	})
	// Appenders keep the subscription busy throughout.
	actx, stopAppends := context.WithCancel(ctx)
	var appended atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; actx.Err() == nil; i++ {
			if _, err := s.Append(actx, "r-"+string(rune('a'+i%5)), eventstore.Any, ev("Tick", `{}`), ev("Tick", `{}`)); err == nil {
				appended.Add(2)
			}
		}
	}()
	for round := range 3 {
		from := batches.Load()
		waitFor(t, "batches before the reset", 30*time.Second, func() bool { return batches.Load() >= from+5 })
		during := batches.Load()
		err := s.ResetSubscription(ctx, "reset-delete", eventstore.Position{}, func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM `+applied); err != nil {
				return err
			}
			// A slow reset: batches keep coming meanwhile.
			_, err := tx.Exec(ctx, `SELECT pg_sleep(0.4)`)
			return err
		})
		if err != nil {
			t.Fatalf("reset %d: %v", round, err)
		}
		t.Logf("reset %d: %d batches handled while it ran", round, batches.Load()-during)
	}
	stopAppends()
	<-done
	count := func() (rows, distinct int64) {
		if err := db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM `+applied).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		return rows, distinct
	}
	// The log, not the count of appends that returned nil: an append cut
	// off by stopAppends may still commit on the server.
	logCount := func() (n int64) {
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "every event applied", time.Minute, func() bool { _, d := count(); return d == logCount() })
	if err := stopSub(); err != nil {
		t.Fatal(err)
	}
	if rows, distinct := count(); rows != distinct {
		t.Fatalf("read model has %d rows for %d events: %d applied twice", rows, distinct, rows-distinct)
	}
}

// A reset to a position past the last committed event is refused with a
// typed error naming the position and the head, and changes nothing.
func TestResetPastTheHeadIsRefused(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "past-head"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Register(ctx); err != nil {
		t.Fatal(err)
	}
	// Empty log: any position but the start is past the head.
	var past *eventstore.PastHeadError
	err = s.ResetSubscription(ctx, "past-head", eventstore.Position{TxID: 1, Seq: 1}, nil)
	if !errors.Is(err, eventstore.ErrPastHead) || !errors.As(err, &past) || !past.Head.IsZero() {
		t.Fatalf("reset past the head of an empty log: %v", err)
	}
	res, err := s.Append(ctx, "h-1", eventstore.NoStream, ev("Tick", `{}`), ev("Tick", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	head := res.Position
	called := false
	for _, to := range []eventstore.Position{{TxID: head.TxID, Seq: head.Seq + 1}, {TxID: head.TxID + 1}, {TxID: 1 << 62, Seq: 1}} {
		err := s.ResetSubscription(ctx, "past-head", to, func(context.Context, pgx.Tx) error { called = true; return nil })
		if !errors.As(err, &past) || past.Position != to || past.Head != head || past.Subscription != "past-head" ||
			!strings.Contains(err.Error(), to.String()) || !strings.Contains(err.Error(), head.String()) {
			t.Fatalf("reset to %s past the head %s: %v", to, head, err)
		}
	}
	if called {
		t.Fatal("the reset function ran for a refused reset")
	}
	st, err := s.SubscriptionStatuses(ctx, "past-head")
	if err != nil || !st[0].Checkpoint.IsZero() {
		t.Fatalf("checkpoint moved: %+v %v", st, err)
	}
	// The head itself and anything before it are fine.
	for _, to := range []eventstore.Position{head, {TxID: head.TxID, Seq: head.Seq - 1}} {
		if err := s.ResetSubscription(ctx, "past-head", to, nil); err != nil {
			t.Fatalf("reset to %s (head %s): %v", to, head, err)
		}
	}
}

package eventstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// A subscription with StopAt set to the head returns once every partition
// has handled every event up to it, and not before: while an earlier
// transaction that took a transaction ID stays open, the events committed
// after it (the head among them) are not readable, and Run waits for it
// instead of returning at the readable end.
func TestSubscriptionStopAtWaitsForTheHorizon(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	rm := newReadModel(t, db)
	appendN(t, s, 6, 10, "Tick")

	// An open transaction with a transaction ID older than what follows.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := s.AppendTx(ctx, tx, "open-1", eventstore.NoStream, ev("Tick", `{}`)); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 4, 5, "Tock") // committed after the open transaction began: not readable yet
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "rm", Partitions: 3, BatchSize: 7,
		PollInterval: 20 * time.Millisecond, LeaseTTL: 600 * time.Millisecond, StopAt: head.Position})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, rm.handle) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with %d of 80 events handled while a transaction before the stop position was open", err, rm.count(t))
	case <-time.After(1500 * time.Millisecond):
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after the transaction ended")
	}
	if n := rm.count(t); n != 80 {
		t.Fatalf("handled %d events up to the stop position, want 80", n)
	}
}

// Partitions leased by another process count as reached when their
// checkpoints show it: a stopping subscription run beside a live one (as a
// rebuild runs beside a process running the projection) returns although
// it owns only some partitions, the others caught up by the live one —
// including a partition with no events at all.
func TestSubscriptionStopAtCountsOtherProcessesPartitions(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	rm := newReadModel(t, db)
	appendN(t, s, 3, 20, "Tick") // 3 streams over 8 partitions: some hold none
	const parts = 8
	cfg := eventstore.SubscriptionConfig{Name: "rm", Partitions: parts, PollInterval: 20 * time.Millisecond, LeaseTTL: 600 * time.Millisecond}
	live, err := s.Subscription(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lctx, stopLive := context.WithCancel(ctx)
	liveDone := make(chan error, 1)
	go func() { liveDone <- live.Run(lctx, rm.handle) }()
	defer func() { stopLive(); <-liveDone }()
	waitFor(t, "the live subscription", 60*time.Second, func() bool { return rm.count(t) == 60 })

	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine atomic.Int64
	cfg.StopAt = head.Position
	stopping, err := s.Subscription(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = stopping.Run(rctx, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		mine.Add(int64(len(events)))
		return nil
	})
	if err != nil || rctx.Err() != nil {
		t.Fatalf("Run beside a live subscription: %v (ctx %v)", err, rctx.Err())
	}
	if mine.Load() != 0 {
		t.Fatalf("the stopping subscription handled %d events the live one had already handled", mine.Load())
	}
}

// StopAt and StopWhenCaughtUp together, or a position no log can hold,
// are refused when the subscription is made.
func TestSubscriptionStopAtRefusesBadConfig(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	for _, cfg := range []eventstore.SubscriptionConfig{
		{Name: "both", StopWhenCaughtUp: true, StopAt: eventstore.Position{TxID: 1, Seq: 1}},
		{Name: "far", StopAt: eventstore.Position{TxID: 1 << 63, Seq: 1}},
	} {
		if _, err := s.Subscription(cfg); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Errorf("%s: Subscription: %v, want ErrInvalidArgument", cfg.Name, err)
		}
	}
}

package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
)

func TestReadLast(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	if p, err := s.ReadLast(ctx, 5, eventstore.Filter{}); err != nil || len(p.Events) != 0 || !p.Next.IsZero() {
		t.Fatalf("empty log: %+v, %v", p, err)
	}
	for i := range 6 {
		stream := "order-1"
		if i%2 == 1 {
			stream = "payment-1"
		}
		if _, err := s.Append(ctx, stream, eventstore.Any, ev("E", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	var all eventstore.Page
	waitFor(t, "six readable events", 30*time.Second, func() bool {
		p, err := s.ReadAll(ctx, eventstore.Position{}, 100)
		all = p
		return err == nil && len(p.Events) == 6
	})
	// The last two orders, in log order; Next is the end of the readable
	// log, past the payment after them.
	p, err := s.ReadLast(ctx, 2, eventstore.Filter{Categories: []string{"order"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 2 || p.Events[0].Position != all.Events[2].Position || p.Events[1].Position != all.Events[4].Position || p.Next != all.Events[5].Position {
		t.Fatalf("last two orders: %+v", p)
	}
	if p, err := s.ReadLast(ctx, 2, eventstore.Filter{Categories: []string{"none"}}); err != nil || len(p.Events) != 0 || p.Next != all.Events[5].Position {
		t.Fatalf("nothing selected: %+v, %v", p, err)
	}
	// More than there are: all of them.
	p, err = s.ReadLast(ctx, 100, eventstore.Filter{})
	if err != nil || len(p.Events) != 6 || p.Events[0].Position != all.Events[0].Position {
		t.Fatalf("last 100: %d events, %v", len(p.Events), err)
	}

	// A transaction holding an earlier ID open hides what committed after
	// it, as for ReadAll: a tail started then cannot skip its events.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := s.AppendTx(ctx, tx, "order-2", eventstore.Any, ev("E", `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "order-3", eventstore.Any, ev("E", `{}`)); err != nil {
		t.Fatal(err)
	}
	p, err = s.ReadLast(ctx, 1, eventstore.Filter{Categories: []string{"order"}})
	if err != nil || len(p.Events) != 1 || p.Events[0].StreamID != "order-1" || p.Next != all.Events[5].Position {
		t.Fatalf("with an open transaction: %+v, %v", p, err)
	}
	if _, err := s.ReadLast(ctx, 0, eventstore.Filter{}); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func TestReadCorrelated(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	a := ev("OrderPlaced", `{}`)
	a.Metadata.CorrelationID = "req-1"
	ra, err := s.Append(ctx, "order-1", eventstore.NoStream, a)
	if err != nil {
		t.Fatal(err)
	}
	b := ev("PaymentCompleted", `{}`)
	b.Metadata = eventstore.Metadata{CorrelationID: "req-1", CausationID: "x"}
	if _, err := s.Append(ctx, "payment-1", eventstore.NoStream, b, ev("Other", `{}`)); err != nil {
		t.Fatal(err)
	}
	// Committed but still hidden from gap-safe readers by an open
	// transaction: ReadCorrelated shows it anyway.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := s.AppendTx(ctx, tx, "x-1", eventstore.Any, ev("E", `{}`)); err != nil {
		t.Fatal(err)
	}
	c := ev("EmailSent", `{}`)
	c.Metadata.CorrelationID = "req-1"
	if _, err := s.Append(ctx, "mail-1", eventstore.NoStream, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadCorrelated(ctx, "req-1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Position != ra.Position || got[1].Type != "PaymentCompleted" || got[1].Metadata.CausationID != "x" || got[2].Type != "EmailSent" {
		t.Fatalf("correlated: %+v", got)
	}
	if got, err := s.ReadCorrelated(ctx, "req-1", 1); err != nil || len(got) != 1 {
		t.Fatalf("limit 1: %d, %v", len(got), err)
	}
	if got, err := s.ReadCorrelated(ctx, "none", 10); err != nil || len(got) != 0 {
		t.Fatalf("unknown: %d, %v", len(got), err)
	}
	// The lookup has the index the migration adds.
	var idx bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = 'events_correlation_idx')`, db.Schema).Scan(&idx); err != nil || !idx {
		t.Fatalf("events_correlation_idx missing: %v", err)
	}
}

package projection_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// panicky applies events to a totals read model but panics on every event
// of the stream "bad-0".
type panicky struct{ *totals }

func (p panicky) Handle(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	if e.StreamID == "bad-0" {
		panic("boom on " + e.StreamID)
	}
	return p.totals.Handle(ctx, tx, e)
}

// A handler that panics on one event does not take the process down: the
// panic is a handler error, retried, then parked (Park) while every other
// event is handled; a retry of the dead letter panics again and leaves it
// parked; under Stop the projection stops with a *eventstore.PanicError.
// A ResetFunc that panics makes Reset return an error.
func TestHandlerPanicIsAnError(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	tt := newTotals(t, db.Pool, db.Schema, "panic_totals")
	appendSome(t, s, "good", 3, 4, "Tick")
	appendSome(t, s, "bad", 1, 1, "Tick")
	appendSome(t, s, "good", 3, 2, "Tick")
	cfg := &projection.Config{MaxAttempts: 2, RetryBackoff: time.Millisecond, PollInterval: 20 * time.Millisecond}
	r := projection.NewRunner(s, []projection.Projection{{Name: "panicky", Handler: panicky{tt}}}, cfg)
	stop := runRunner(t, r)
	pgtest.WaitFor(t, "the dead letter", 60*time.Second, func() bool {
		dl, err := r.DeadLetters(context.Background(), "panicky")
		return err == nil && len(dl) == 1
	})
	dl, _ := r.DeadLetters(context.Background(), "panicky")
	if dl[0].StreamID != "bad-0" || dl[0].Attempts != 2 || !strings.Contains(dl[0].Error, "boom on bad-0") {
		t.Fatalf("dead letter %+v", dl[0])
	}
	want := expected(t, db.Pool, db.Schema)
	delete(want, "bad-0")
	pgtest.WaitFor(t, "the other events", 60*time.Second, func() bool { return equalRows(tt.read(t, db.Pool), want) })
	// A retry runs the handler again: it panics again, the event stays.
	if n, err := r.RetryDeadLetters(context.Background(), "panicky", ""); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	pgtest.WaitFor(t, "the retry to fail", 60*time.Second, func() bool {
		dl, err := r.DeadLetters(context.Background(), "panicky")
		return err == nil && len(dl) == 1 && dl[0].Attempts == 3 && !dl[0].RetryRequested
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Stop policy: the projection stops with the panic as its error.
	tt2 := newTotals(t, db.Pool, db.Schema, "panic_totals_stop")
	r2 := projection.NewRunner(s, []projection.Projection{{Name: "panicky-stop", Handler: panicky{tt2}, OnFailure: eventstore.Stop}}, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := r2.Run(ctx)
	var pe *eventstore.PanicError
	var he *eventstore.HandlerError
	if !errors.As(err, &pe) || !errors.As(err, &he) || he.Event.StreamID != "bad-0" || pe.Value != "boom on bad-0" || len(pe.Stack) == 0 {
		t.Fatalf("Run under Stop: want a HandlerError wrapping a PanicError, got %v", err)
	}

	// A ResetFunc that panics: Reset returns the error, nothing moves.
	r3 := projection.NewRunner(s, []projection.Projection{{Name: "panicky", Handler: panicky{tt},
		Reset: func(context.Context, pgx.Tx) error { panic("reset boom") }}}, cfg)
	before := statusOf(t, r3, "panicky").Checkpoint
	if err := r3.Reset(context.Background(), "panicky", eventstore.Position{}); !errors.As(err, &pe) || pe.Value != "reset boom" {
		t.Fatalf("Reset with a panicking ResetFunc: %v", err)
	}
	if err := r3.Rebuild(context.Background(), "panicky", nil); !errors.As(err, &pe) {
		t.Fatalf("Rebuild with a panicking ResetFunc: %v", err)
	}
	if after := statusOf(t, r3, "panicky").Checkpoint; after != before {
		t.Fatalf("checkpoint moved from %s to %s", before, after)
	}
}

package workflow_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/workflow"
	"github.com/strata-go/strata/workflow/workflowtest"
)

// reactions collects what a runner reports.
type reactions struct {
	mu  sync.Mutex
	all []workflow.Reaction
}

func (r *reactions) add(rc workflow.Reaction) {
	r.mu.Lock()
	r.all = append(r.all, rc)
	r.mu.Unlock()
}

func (r *reactions) count(f func(workflow.Reaction) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rc := range r.all {
		if f(rc) {
			n++
		}
	}
	return n
}

func TestPaidTimedOutAndLate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := workflowtest.NewClock(time.Now())
	var seen reactions
	run(t, e.runner(t, &workflow.Config{Clock: clock, PollInterval: 50 * time.Millisecond, OnReaction: seen.add}))

	ctx := context.Background()
	placed := func(id string, corr string) {
		ne, _ := e.reg.Encode(OrderPlaced{Order: id, TTL: 60_000})
		ne.Metadata.CorrelationID = corr
		if _, err := e.store.Append(ctx, "order-"+id, eventstore.NoStream, ne); err != nil {
			t.Fatal(err)
		}
	}
	placed("1", "corr-1")
	placed("2", "corr-2")
	e.append(t, "payment-1", PaymentDone{Order: "1"})
	pgtest.WaitFor(t, "order 1 finished, order 2 waiting", 30*time.Second, func() bool {
		return e.finished(t) == 1 && e.deadlines(t) == 1 && len(e.types(t, "pay-2")) == 1
	})
	if got := e.types(t, "pay-1"); !slices.Equal(got, []string{"Started", "Paid"}) {
		t.Errorf("pay-1 = %v", got)
	}
	if got := e.types(t, "mail-1"); !slices.Equal(got, []string{"Confirmed"}) {
		t.Errorf("mail-1 = %v", got)
	}
	if got := e.types(t, "charge-2"); !slices.Equal(got, []string{"Charge"}) {
		t.Errorf("charge-2 = %v", got)
	}

	st, err := workflow.Status(ctx, e.store, clock.Now().Add(61*time.Second), 0)
	if err != nil || len(st) != 1 || st[0].Workflow != "pay" || st[0].Running != 1 || st[0].Finished != 1 ||
		st[0].Deadlines != 1 || st[0].Due != 1 || st[0].Overdue != 1 || st[0].Parked != 0 || st[0].NextDue.IsZero() {
		t.Errorf("Status a minute on = %+v, %v", st, err)
	}
	// Not due yet: nothing fires.
	clock.Advance(59 * time.Second)
	time.Sleep(100 * time.Millisecond)
	if got := e.types(t, "pay-2"); len(got) != 1 {
		t.Fatalf("pay-2 = %v before its deadline", got)
	}
	clock.Advance(2 * time.Second)
	pgtest.WaitFor(t, "order 2 timed out", 30*time.Second, func() bool { return e.finished(t) == 2 })
	if got := e.types(t, "pay-2"); !slices.Equal(got, []string{"Started", "TimedOut"}) {
		t.Errorf("pay-2 = %v", got)
	}
	if got := e.types(t, "mail-2"); !slices.Equal(got, []string{"Cancelled"}) {
		t.Errorf("mail-2 = %v", got)
	}
	if n := e.deadlines(t); n != 0 {
		t.Errorf("%d deadlines left", n)
	}
	// The deadline's events carry the instance's correlation, caused by
	// the deadline; the event's reactions are caused by the event.
	for ev, err := range e.store.ReadStream(ctx, "mail-2", 0) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Metadata.CorrelationID != "corr-2" || !strings.HasPrefix(ev.Metadata.CausationID, "deadline:payment:") {
			t.Errorf("mail-2 metadata = %+v", ev.Metadata)
		}
	}

	// A payment after the timeout: the instance has finished, nothing happens.
	e.append(t, "payment-2", PaymentDone{Order: "2"})
	pgtest.WaitFor(t, "the late payment skipped", 30*time.Second, func() bool {
		return seen.count(func(rc workflow.Reaction) bool { return rc.Key == "2" && rc.Skipped }) == 1
	})
	if got := e.types(t, "pay-2"); !slices.Equal(got, []string{"Started", "TimedOut"}) {
		t.Errorf("pay-2 after a late payment = %v", got)
	}
}

// A replay of the workflow's inputs (its subscription reset to the start)
// changes nothing: each input was recorded as the cause of the instance's
// events, and a second reaction to it is skipped.
func TestReplayChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := workflowtest.NewClock(time.Now())
	var seen reactions
	r := e.runner(t, &workflow.Config{Clock: clock, PollInterval: 50 * time.Millisecond, OnReaction: seen.add})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for _, id := range []string{"1", "2", "3"} {
		e.append(t, "order-"+id, OrderPlaced{Order: id, TTL: 1000})
	}
	e.append(t, "payment-2", PaymentDone{Order: "2"})
	pgtest.WaitFor(t, "four reactions", 30*time.Second, func() bool { return seen.count(func(workflow.Reaction) bool { return true }) == 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := e.store.ResetSubscription(context.Background(), r.SubscriptionName(), eventstore.Position{}, nil); err != nil {
		t.Fatal(err)
	}
	run(t, r)
	pgtest.WaitFor(t, "the replay", 30*time.Second, func() bool {
		// Orders 1 and 3 were handled (their events name them as cause),
		// order 2 has finished: all four inputs are skipped.
		return seen.count(func(rc workflow.Reaction) bool { return rc.Skipped }) == 4
	})
	for _, s := range []string{"pay-1", "pay-3"} {
		if got := e.types(t, s); !slices.Equal(got, []string{"Started"}) {
			t.Errorf("%s = %v after a replay", s, got)
		}
	}
	if got := e.types(t, "pay-2"); !slices.Equal(got, []string{"Started", "Paid"}) {
		t.Errorf("pay-2 = %v after a replay", got)
	}
	for _, s := range []string{"charge-1", "charge-2", "charge-3"} {
		if got := e.types(t, s); len(got) != 1 {
			t.Errorf("%s = %v after a replay", s, got)
		}
	}
}

func TestInvalidWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		edit func(*workflow.Workflow[payState])
		want string
	}{
		{"no name", func(w *workflow.Workflow[payState]) { w.Name = "" }, "Name is required"},
		{"dash", func(w *workflow.Workflow[payState]) { w.Name = "a-b" }, "without '-'"},
		{"long", func(w *workflow.Workflow[payState]) { w.Name = strings.Repeat("x", 64) }, "63 bytes"},
		{"bad utf8", func(w *workflow.Workflow[payState]) { w.Name = "\xff" }, "valid text"},
		{"no route", func(w *workflow.Workflow[payState]) { w.Route = nil }, "Route is required"},
		{"no decide", func(w *workflow.Workflow[payState]) { w.Decide = nil }, "Decide is required"},
		{"no evolve", func(w *workflow.Workflow[payState]) { w.Evolve = nil }, "Evolve is required"},
		{"own category", func(w *workflow.Workflow[payState]) { w.Categories = []string{"pay"} }, "own category"},
	} {
		wf := payWorkflow()
		tc.edit(&wf)
		_, err := workflow.New(e.store, e.reg, wf, nil)
		if !errors.Is(err, workflow.ErrInvalidWorkflow) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want ErrInvalidWorkflow saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := workflow.New[payState](nil, e.reg, payWorkflow(), nil); !errors.Is(err, workflow.ErrInvalidWorkflow) {
		t.Errorf("New without a store = %v", err)
	}
}

// A decision that cannot be carried out, a key that cannot name a stream,
// an event the registry refuses, a panic: nothing of the reaction is
// written, and the input is parked (a key by the router, as a dead letter
// of the workflow's subscription; the rest in the inbox) while the other
// instances go on.
func TestBadDecisionsWriteNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wf := payWorkflow()
	wf.Route = func(ev eventstore.Event, v any) (string, bool) {
		if p, ok := v.(OrderPlaced); ok && p.Order == "badkey" {
			return strings.Repeat("k", workflow.MaxKeyLength+1), true
		}
		return payRoute(ev, v)
	}
	wf.Decide = func(s payState, in workflow.Input) (workflow.Decision, error) {
		p, _ := in.Event.(OrderPlaced)
		switch p.Order {
		case "nostream":
			return workflow.Decision{Events: []any{Started{Order: p.Order}}, Send: []workflow.Message{{Event: Charge{}}}}, nil
		case "noname":
			return workflow.Decision{Events: []any{Started{Order: p.Order}}, Schedule: []workflow.Deadline{{At: in.Time}}}, nil
		case "notime":
			return workflow.Decision{Events: []any{Started{Order: p.Order}}, Schedule: []workflow.Deadline{{Name: "x"}}}, nil
		case "unstarted":
			return workflow.Decision{Send: []workflow.Message{workflow.Send("charge-x", Charge{})}}, nil
		case "unregistered":
			return workflow.Decision{Events: []any{Started{Order: p.Order}}, Send: []workflow.Message{workflow.Send("charge-x", Unregistered{})}}, nil
		case "finishschedule":
			return workflow.Decision{Events: []any{Started{Order: p.Order}}, Finish: true,
				Schedule: []workflow.Deadline{{Name: "x", At: in.Time}}}, nil
		case "panic":
			panic("boom")
		case "error":
			return workflow.Decision{}, errors.New("refused")
		}
		return payDecide(s, in)
	}
	r, err := workflow.New(e.store, e.reg, wf, &workflow.Config{MaxAttempts: 1, RetryBackoff: time.Millisecond, PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	bad := []string{"nostream", "noname", "notime", "unstarted", "unregistered", "finishschedule", "panic", "error", "badkey"}
	for _, id := range bad {
		e.append(t, "order-"+id, OrderPlaced{Order: id, TTL: 60_000})
	}
	e.append(t, "order-good", OrderPlaced{Order: "good", TTL: 60_000})
	// The key that cannot name a stream is refused by the router: a dead
	// letter of the subscription. The others are parked in the inbox.
	pgtest.WaitFor(t, "the bad inputs parked", 60*time.Second, func() bool {
		dl, err := e.store.DeadLetters(context.Background(), r.SubscriptionName())
		return err == nil && len(dl) == 1 &&
			e.count(t, `SELECT count(*) FROM %s.workflow_inbox WHERE failed`) == len(bad)-1
	})
	pgtest.WaitFor(t, "the good order started", 30*time.Second, func() bool { return len(e.types(t, "pay-good")) == 1 })
	for _, id := range bad {
		if got := e.types(t, "pay-"+id); got != nil {
			t.Errorf("pay-%s = %v", id, got)
		}
	}
	if got := e.types(t, "charge-x"); got != nil {
		t.Errorf("charge-x = %v", got)
	}
	if n := e.count(t, `SELECT count(*) FROM %s.workflow_instances`); n != 1 {
		t.Errorf("%d instances, want the good one", n)
	}
	if n := e.deadlines(t); n != 1 {
		t.Errorf("%d deadlines, want the good one's", n)
	}
	dl, _ := e.store.DeadLetters(context.Background(), r.SubscriptionName())
	var msgs []string
	for _, d := range dl {
		msgs = append(msgs, d.Error)
	}
	rows, err := e.db.Pool.Query(context.Background(), `SELECT last_error FROM `+e.db.Schema+`.workflow_inbox`)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, inbox...)
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"invalid decision", "invalid instance key", "panic: boom", "refused", "must record an event"} {
		if !strings.Contains(all, want) {
			t.Errorf("no dead letter says %q:\n%s", want, all)
		}
	}
}

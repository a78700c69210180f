package workflow_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/workflow"
	"github.com/strata-go/strata/workflow/workflowtest"
)

// Deadlines that came due while no process fired them (an outage) fire
// once each, in due order, when a worker starts again; a second pass
// fires nothing.
func TestOverdueDeadlinesFireOnceInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := workflowtest.NewClock(time.Now())
	const n = 30
	// Events only: the deadlines are scheduled, nobody fires them.
	events := e.runner(t, &workflow.Config{Clock: clock, NoDeadlines: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- events.Run(ctx) }()
	// Placed in one order, due in the reverse one.
	for i := range n {
		e.append(t, "order-"+strconv.Itoa(i), OrderPlaced{Order: strconv.Itoa(i), TTL: int64(n-i) * 1000})
	}
	// Every reaction committed before the stop (an input leaves the inbox
	// in its reaction's transaction): a reaction cut by the stop would
	// leave its server process holding the instance's lock for a moment,
	// and the deadline worker passes a held instance over (it fires it
	// later, out of due order, which this test would take for a fault).
	pgtest.WaitFor(t, "every deadline scheduled and every input reacted to", 30*time.Second, func() bool {
		return e.deadlines(t) == n && e.count(t, `SELECT count(*) FROM %s.workflow_inbox WHERE workflow = 'pay'`) == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour)
	var mu sync.Mutex
	var fired []workflow.Reaction
	deadlines := e.runner(t, &workflow.Config{Clock: clock, NoEvents: true, OnReaction: func(rc workflow.Reaction) {
		mu.Lock()
		fired = append(fired, rc)
		mu.Unlock()
	}})
	run(t, deadlines)
	// OnReaction runs after its reaction's commit: wait for both.
	pgtest.WaitFor(t, "every instance timed out", 30*time.Second, func() bool {
		mu.Lock()
		k := len(fired)
		mu.Unlock()
		return e.finished(t) == n && k >= n
	})
	mu.Lock()
	got := slices.Clone(fired)
	mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d deadlines fired, want %d", len(got), n)
	}
	for i, rc := range got {
		if want := strconv.Itoa(n - 1 - i); rc.Key != want {
			t.Errorf("fire %d was instance %s, want %s (due order)", i+1, rc.Key, want)
		}
		if i > 0 && rc.Deadline.DueAt.Before(got[i-1].Deadline.DueAt) {
			t.Errorf("fire %d due %s before the previous one's %s", i+1, rc.Deadline.DueAt, got[i-1].Deadline.DueAt)
		}
	}
	for i := range n {
		if got := e.types(t, "pay-"+strconv.Itoa(i)); !slices.Equal(got, []string{"Started", "TimedOut"}) {
			t.Errorf("pay-%d = %v", i, got)
		}
		if got := e.types(t, "mail-"+strconv.Itoa(i)); !slices.Equal(got, []string{"Cancelled"}) {
			t.Errorf("mail-%d = %v", i, got)
		}
	}
	if f, _, err := deadlines.FireDue(context.Background()); err != nil || f != 0 {
		t.Errorf("a second pass fired %d (%v)", f, err)
	}
}

// The payment that cancels a deadline and the deadline's firing race for
// every instance, from three transactions at once (the reactions and two
// firing loops). The payment does not finish the instance here, so only
// the cancel stands between it and the deadline: each instance ends
// either paid (and its deadline never fires) or timed out (and the late
// payment is ignored), never both, and no deadline is left.
func TestCancelRacingFireNeverBoth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := workflowtest.NewClock(time.Now())
	const n = 150
	wf := payWorkflow()
	wf.Decide = func(s payState, in workflow.Input) (workflow.Decision, error) {
		d, err := payDecide(s, in)
		if _, ok := in.Event.(PaymentDone); ok && err == nil {
			d.Finish = false
		}
		return d, err
	}
	newRunner := func(cfg *workflow.Config) *workflow.Runner[payState] {
		r, err := workflow.New(e.store, e.reg, wf, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	run(t, newRunner(&workflow.Config{Clock: clock, NoDeadlines: true, PollInterval: 20 * time.Millisecond}))
	for i := range n {
		e.append(t, "order-"+strconv.Itoa(i), OrderPlaced{Order: strconv.Itoa(i), TTL: 1000})
	}
	pgtest.WaitFor(t, "every deadline scheduled", 60*time.Second, func() bool { return e.deadlines(t) == n })
	clock.Advance(time.Second) // every deadline is due now

	// One deadline per transaction (BatchSize 4), starting once a third
	// of the payments are in: the two sides meet on most instances.
	firers := []*workflow.Runner[payState]{
		newRunner(&workflow.Config{Clock: clock, NoEvents: true, BatchSize: 4}),
		newRunner(&workflow.Config{Clock: clock, NoEvents: true, BatchSize: 4}),
	}
	ctx := context.Background()
	start, fire := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range firers {
		wg.Go(func() {
			<-fire
			for e.deadlines(t) > 0 {
				if _, _, err := f.FireDue(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		for i := range n {
			if i == n/3 {
				close(fire)
			}
			e.append(t, "payment-"+strconv.Itoa(i), PaymentDone{Order: strconv.Itoa(i)})
		}
	})
	close(start)
	wg.Wait()
	pgtest.WaitFor(t, "every payment handled", 60*time.Second, func() bool {
		return e.count(t, `SELECT count(*) FROM %s.workflow_instances WHERE version >= 2`) == n &&
			e.count(t, `SELECT count(*) FROM %s.workflow_inbox`) == 0
	})

	paid, timedOut := 0, 0
	for i := range n {
		id := strconv.Itoa(i)
		switch got, mail := e.types(t, "pay-"+id), e.types(t, "mail-"+id); {
		case slices.Equal(got, []string{"Started", "Paid"}) && slices.Equal(mail, []string{"Confirmed"}):
			paid++
		case slices.Equal(got, []string{"Started", "TimedOut"}) && slices.Equal(mail, []string{"Cancelled"}):
			timedOut++
		default:
			t.Errorf("instance %s: pay %v, mail %v", id, got, mail)
		}
	}
	if n := e.deadlines(t); n != 0 {
		t.Errorf("%d deadlines left", n)
	}
	t.Logf("%d paid, %d timed out", paid, timedOut)
	if paid == 0 || timedOut == 0 {
		t.Errorf("no race: %d paid, %d timed out", paid, timedOut)
	}
}

// A deadline's reaction that keeps failing is retried after a backoff
// and parked after MaxAttempts, without holding up the deadlines due
// after it; RetryDeadlines makes it due again.
func TestFailingDeadlineIsParked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := workflowtest.NewClock(time.Now())
	var mu sync.Mutex
	failing := true
	wf := payWorkflow()
	wf.Decide = func(s payState, in workflow.Input) (workflow.Decision, error) {
		mu.Lock()
		defer mu.Unlock()
		if in.Deadline != nil && s.Order == "bad" && failing {
			return workflow.Decision{}, fmt.Errorf("cannot cancel order %s", s.Order)
		}
		return payDecide(s, in)
	}
	r, err := workflow.New(e.store, e.reg, wf, &workflow.Config{Clock: clock, MaxAttempts: 3, RetryBackoff: time.Second,
		PollInterval: 20 * time.Millisecond, NoDeadlines: true})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	e.append(t, "order-bad", OrderPlaced{Order: "bad", TTL: 1000})
	e.append(t, "order-good", OrderPlaced{Order: "good", TTL: 2000})
	pgtest.WaitFor(t, "deadlines scheduled", 30*time.Second, func() bool { return e.deadlines(t) == 2 })
	clock.Advance(3 * time.Second)
	ctx := context.Background()
	if f, _, err := r.FireDue(ctx); err != nil || f != 1 {
		t.Fatalf("FireDue = %d, %v; want the good one fired", f, err)
	}
	for attempt := 2; attempt <= 3; attempt++ {
		if f, _, _ := r.FireDue(ctx); f != 0 {
			t.Fatalf("the failing deadline fired before its backoff")
		}
		clock.Advance(time.Minute)
		if f, _, _ := r.FireDue(ctx); f != 0 {
			t.Fatalf("attempt %d fired", attempt)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM %s.workflow_deadlines WHERE failed AND attempts = 3`); n != 1 {
		t.Fatalf("%d parked deadlines, want 1", n)
	}
	clock.Advance(time.Hour)
	if f, _, _ := r.FireDue(ctx); f != 0 {
		t.Fatal("a parked deadline fired")
	}
	if st, err := r.Status(ctx, time.Minute); err != nil || st.Parked != 1 || st.Running != 1 || st.Finished != 1 {
		t.Errorf("Status = %+v, %v; want 1 parked, 1 running, 1 finished", st, err)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	if n, err := r.RetryDeadlines(ctx); err != nil || n != 1 {
		t.Fatalf("RetryDeadlines = %d, %v", n, err)
	}
	if f, _, err := r.FireDue(ctx); err != nil || f != 1 {
		t.Fatalf("after the retry FireDue = %d, %v", f, err)
	}
	if got := e.types(t, "pay-bad"); !slices.Equal(got, []string{"Started", "TimedOut"}) {
		t.Errorf("pay-bad = %v", got)
	}
}

// The deadline worker sleeps until the next deadline and is woken by a
// reaction that schedules one sooner: with the wall clock, a deadline
// 300ms away fires about 300ms later, not at the next poll (an hour).
func TestDeadlineWorkerWakesOnTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var seen reactions
	run(t, e.runner(t, &workflow.Config{PollInterval: time.Hour, OnReaction: seen.add}))
	// The subscription polls every hour too: give the worker a moment to LISTEN.
	time.Sleep(200 * time.Millisecond)
	placed := time.Now()
	e.append(t, "order-1", OrderPlaced{Order: "1", TTL: 300})
	pgtest.WaitFor(t, "the deadline fired", 30*time.Second, func() bool {
		return seen.count(func(rc workflow.Reaction) bool { return rc.Deadline != nil }) == 1
	})
	if d := time.Since(placed); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("fired %s after the order, want about 300ms", d)
	}
}

// An input routed to an instance is decided before the instance's
// deadline fires: a payment whose reaction is parked holds the deadline
// it would cancel, and once retried it cancels it.
func TestRoutedInputComesBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := workflowtest.NewClock(time.Now())
	var mu sync.Mutex
	failing := true
	wf := payWorkflow()
	wf.Decide = func(s payState, in workflow.Input) (workflow.Decision, error) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := in.Event.(PaymentDone); ok && failing {
			return workflow.Decision{}, fmt.Errorf("payment service unreachable")
		}
		return payDecide(s, in)
	}
	r, err := workflow.New(e.store, e.reg, wf, &workflow.Config{Clock: clock, MaxAttempts: 1, PollInterval: 20 * time.Millisecond,
		NoDeadlines: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	e.append(t, "order-x", OrderPlaced{Order: "x", TTL: 1000})
	e.append(t, "payment-x", PaymentDone{Order: "x"})
	pgtest.WaitFor(t, "the payment parked", 30*time.Second, func() bool {
		return e.count(t, `SELECT count(*) FROM %s.workflow_inbox WHERE failed`) == 1
	})
	clock.Advance(time.Hour)
	ctx := context.Background()
	if f, _, err := r.FireDue(ctx); err != nil || f != 0 {
		t.Fatalf("FireDue = %d, %v; the deadline fired before the payment routed to its instance", f, err)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	if n, err := r.RetryInputs(ctx); err != nil || n != 1 {
		t.Fatalf("RetryInputs = %d, %v", n, err)
	}
	pgtest.WaitFor(t, "the payment handled", 30*time.Second, func() bool { return e.finished(t) == 1 })
	if f, _, err := r.FireDue(ctx); err != nil || f != 0 {
		t.Fatalf("FireDue after the payment = %d, %v", f, err)
	}
	if got := e.types(t, "pay-x"); !slices.Equal(got, []string{"Started", "Paid"}) {
		t.Errorf("pay-x = %v", got)
	}
}

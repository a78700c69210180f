package workflow_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/workflow"
)

// TestMain fails the package's run when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, pgtest.LeakOptions()...)
}

// The tests' workflow, "pay": an order is placed (stream order-ID), the
// workflow asks for a charge and waits for the payment (stream
// payment-ID, routed by the order ID in its payload) until its deadline;
// then it confirms or cancels, by mail (stream mail-ID), and finishes.

// OrderPlaced starts an instance. TTL is how long the payment may take,
// in milliseconds.
type OrderPlaced struct {
	Order string `json:"order"`
	TTL   int64  `json:"ttl"`
}

// PaymentDone is the payment of an order.
type PaymentDone struct {
	Order string `json:"order"`
}

// Started, Paid and TimedOut are the instance's own events.
type Started struct {
	Order string `json:"order"`
}

// Paid records the payment.
type Paid struct{}

// TimedOut records the deadline.
type TimedOut struct{}

// Charge, Confirmed and Cancelled are sent.
type Charge struct {
	Order string `json:"order"`
}

// Confirmed tells the customer the order is paid.
type Confirmed struct {
	Order string `json:"order"`
}

// Cancelled tells the customer the order is cancelled.
type Cancelled struct {
	Order string `json:"order"`
}

// Unregistered is a type the registry does not know.
type Unregistered struct{}

// payState is the instance's state.
type payState struct {
	Order   string
	Started bool
	Paid    bool
	Timeout bool
}

func newRegistry(tb testing.TB) *schema.Registry {
	tb.Helper()
	reg := schema.NewRegistry()
	obj := []byte(`{"type":"object"}`)
	for _, err := range []error{
		schema.Register[OrderPlaced](reg, "OrderPlaced", 1, obj),
		schema.Register[PaymentDone](reg, "PaymentDone", 1, obj),
		schema.Register[Started](reg, "Started", 1, obj),
		schema.Register[Paid](reg, "Paid", 1, obj),
		schema.Register[TimedOut](reg, "TimedOut", 1, obj),
		schema.Register[Charge](reg, "Charge", 1, obj),
		schema.Register[Confirmed](reg, "Confirmed", 1, obj),
		schema.Register[Cancelled](reg, "Cancelled", 1, obj),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return reg
}

func payRoute(e eventstore.Event, ev any) (string, bool) {
	switch v := ev.(type) {
	case OrderPlaced:
		return v.Order, true
	case PaymentDone:
		return v.Order, true
	}
	return "", false
}

func payDecide(s payState, in workflow.Input) (workflow.Decision, error) {
	if in.Deadline != nil {
		if in.Deadline.Name != "payment" {
			return workflow.Decision{}, fmt.Errorf("unknown deadline %q", in.Deadline.Name)
		}
		return workflow.Decision{
			Events: []any{TimedOut{}},
			Send:   []workflow.Message{workflow.Send("mail-"+s.Order, Cancelled{Order: s.Order})},
			Finish: true,
		}, nil
	}
	switch ev := in.Event.(type) {
	case OrderPlaced:
		if s.Started {
			return workflow.Decision{}, nil
		}
		return workflow.Decision{
			Events:   []any{Started{Order: ev.Order}},
			Send:     []workflow.Message{workflow.Send("charge-"+ev.Order, Charge{Order: ev.Order})},
			Schedule: []workflow.Deadline{{Name: "payment", At: in.Time.Add(time.Duration(ev.TTL) * time.Millisecond)}},
		}, nil
	case PaymentDone:
		if !s.Started {
			return workflow.Decision{}, nil
		}
		return workflow.Decision{
			Events: []any{Paid{}},
			Send:   []workflow.Message{workflow.Send("mail-"+s.Order, Confirmed{Order: s.Order})},
			Cancel: []string{"payment"},
			Finish: true,
		}, nil
	}
	return workflow.Decision{}, nil
}

func payEvolve(s payState, ev any) payState {
	switch e := ev.(type) {
	case Started:
		s.Order, s.Started = e.Order, true
	case Paid:
		s.Paid = true
	case TimedOut:
		s.Timeout = true
	}
	return s
}

func payWorkflow() workflow.Workflow[payState] {
	return workflow.Workflow[payState]{
		Name:       "pay",
		Categories: []string{"order", "payment"},
		Route:      payRoute,
		Decide:     payDecide,
		Evolve:     payEvolve,
	}
}

// env is one test's schema, store and registry.
type env struct {
	db    *pgtest.DB
	store *eventstore.Store
	reg   *schema.Registry
}

func newEnv(t testing.TB) *env {
	t.Helper()
	db := pgtest.New(t)
	reg := newRegistry(t)
	return &env{db: db, store: eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: reg}), reg: reg}
}

func (e *env) runner(t testing.TB, cfg *workflow.Config) *workflow.Runner[payState] {
	t.Helper()
	r, err := workflow.New(e.store, e.reg, payWorkflow(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs r until the test ends.
func run(t testing.TB, r interface{ Run(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func (e *env) append(t testing.TB, stream string, ev any) {
	t.Helper()
	ne, err := e.reg.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Append(context.Background(), stream, eventstore.Any, ne); err != nil {
		t.Fatal(err)
	}
}

// types returns the event types of a stream, in order (none for a
// stream that does not exist).
func (e *env) types(t testing.TB, stream string) []string {
	t.Helper()
	var out []string
	for ev, err := range e.store.ReadStream(context.Background(), stream, 0) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Type)
	}
	return out
}

// count runs a count query on the test's schema ({s} is the schema).
func (e *env) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	q := fmt.Sprintf(query, pgx.Identifier{e.db.Schema}.Sanitize())
	if err := e.db.Pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) finished(t testing.TB) int {
	return e.count(t, `SELECT count(*) FROM %s.workflow_instances WHERE workflow = 'pay' AND status = 'finished'`)
}

func (e *env) deadlines(t testing.TB) int {
	return e.count(t, `SELECT count(*) FROM %s.workflow_deadlines WHERE workflow = 'pay'`)
}

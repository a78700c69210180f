package aggregatetest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/strata-go/strata/aggregate/aggregatetest"
	"github.com/strata-go/strata/schema"
)

// fakeTB records what the fixture reports. Fatalf ends the goroutine, as
// testing's does; run gives each scenario a goroutine of its own.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatal  bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, a...))
}

func (f *fakeTB) Fatalf(format string, a ...any) {
	f.Errorf(format, a...)
	f.mu.Lock()
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}

func run(scenario func(tb testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		scenario(f)
	}()
	<-done
	return f
}

func (f *fakeTB) only(t *testing.T) string {
	t.Helper()
	if len(f.errors) != 1 {
		t.Fatalf("want one failure, got %d: %q", len(f.errors), f.errors)
	}
	return f.errors[0]
}

func orderRegistry(t *testing.T) *schema.Registry {
	t.Helper()
	reg := schema.NewRegistry()
	for _, err := range []error{
		schema.Register[OrderPlaced](reg, "OrderPlaced", 1, []byte(`{"type":"object","required":["customer","total"],
			"properties":{"customer":{"type":"string","minLength":1},"total":{"type":"integer","minimum":1}}}`)),
		schema.Register[OrderPaid](reg, "OrderPaid", 1, []byte(`{"type":"object","required":["amount"],
			"properties":{"amount":{"type":"integer","minimum":1}}}`)),
		schema.Register[OrderShipped](reg, "OrderShipped", 1, []byte(`{"type":"object"}`)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// Scenarios that hold pass, with or without a registry, and the
// aggregate's state is there to check.
func TestPassingScenarios(t *testing.T) {
	for _, reg := range []*schema.Registry{nil, orderRegistry(t)} {
		tb := run(func(tb testing.TB) {
			f := aggregatetest.New(tb, newOrder, &aggregatetest.Config{Registry: reg, ID: "42"})
			s := f.Given(OrderPlaced{Customer: "ann", Total: 30}).
				When(func(o *Order) error { return o.Pay(10) })
			s.Then(OrderPaid{Amount: 10})
			if o := s.Aggregate(); o.Paid != 10 || o.Status != "placed" || o.Version() != 1 || o.ID() != "42" {
				t.Errorf("state after When: %+v at version %d", o, o.Version())
			}
			f.Given().When(func(o *Order) error { return o.Pay(1) }).ThenError(ErrNotPlaced)
			f.Given().When(func(o *Order) error { return o.Pay(1) }).ThenError(nil)
			f.Given(OrderPlaced{Customer: "ann", Total: 1}).When(func(*Order) error { return nil }).Then()
		})
		if len(tb.errors) > 0 {
			t.Errorf("registry %v: passing scenarios reported %q", reg != nil, tb.errors)
		}
	}
}

// A wrong field, a missing event and an extra event each show as a diff.
func TestThenShowsDiff(t *testing.T) {
	tb := run(func(tb testing.TB) {
		aggregatetest.New(tb, newOrder, nil).
			Given(OrderPlaced{Customer: "ann", Total: 30}).
			When(func(o *Order) error {
				if err := o.Pay(30); err != nil {
					return err
				}
				return o.Ship("dhl")
			}).
			Then(OrderPaid{Amount: 20}, OrderShipped{Carrier: "dhl"}, OrderShipped{Carrier: "ups"})
	})
	want := `aggregatetest: events differ (-want +got):
    aggregatetest_test.OrderPaid {
  -   "amount": 20
  +   "amount": 30
    }
    aggregatetest_test.OrderShipped {
      "carrier": "dhl"
    }
  - aggregatetest_test.OrderShipped {
  -   "carrier": "ups"
  - }
`
	if got := tb.only(t); got != want {
		t.Fatalf("failure reads:\n%s\nwant:\n%s", got, want)
	}
}

// An error where events were expected, no error where one was, and
// another error are each reported with what happened.
func TestErrorMismatches(t *testing.T) {
	f := func(tb testing.TB) *aggregatetest.Fixture[*Order] { return aggregatetest.New(tb, newOrder, nil) }
	cases := []struct {
		name     string
		scenario func(tb testing.TB)
		want     []string
	}{
		{"error instead of events", func(tb testing.TB) {
			f(tb).Given().When(func(o *Order) error { return o.Pay(5) }).Then(OrderPaid{Amount: 5})
		}, []string{"When returned an error: order not placed", `"amount": 5`}},
		{"events instead of error", func(tb testing.TB) {
			f(tb).Given(OrderPlaced{Customer: "ann", Total: 5}).When(func(o *Order) error { return o.Pay(5) }).ThenError(ErrNotPlaced)
		}, []string{`returned no error, want "order not placed"`, "OrderPaid {", `"amount": 5`}},
		{"no error at all", func(tb testing.TB) {
			f(tb).Given(OrderPlaced{Customer: "ann", Total: 5}).When(func(*Order) error { return nil }).ThenError(nil)
		}, []string{"returned no error, want one", "(none)"}},
		{"another error", func(tb testing.TB) {
			f(tb).Given().When(func(o *Order) error { return o.Ship("ups") }).ThenError(ErrNotPlaced)
		}, []string{`When returned "order not paid in full", want an error matching "order not placed"`}},
	}
	for _, c := range cases {
		got := run(c.scenario).only(t)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: failure %q does not say %q", c.name, got, w)
			}
		}
	}
}

// With a registry, a given event it refuses stops the test, and a raised
// event it refuses fails it.
func TestRegistryChecksEvents(t *testing.T) {
	reg := orderRegistry(t)
	tb := run(func(tb testing.TB) {
		aggregatetest.New(tb, newOrder, &aggregatetest.Config{Registry: reg}).Given(OrderPlaced{Customer: "", Total: 30})
		t.Error("Given went on after a refused event")
	})
	if got := tb.only(t); !tb.fatal || !strings.Contains(got, "given event 1") || !strings.Contains(got, "/customer") {
		t.Errorf("refused given event: %q", got)
	}

	tb = run(func(tb testing.TB) {
		aggregatetest.New(tb, newOrder, &aggregatetest.Config{Registry: reg}).
			Given(OrderPlaced{Customer: "ann", Total: 30}).
			When(func(o *Order) error { return o.Pay(-1) }).
			Then(OrderPaid{Amount: -1})
	})
	if got := tb.only(t); !strings.Contains(got, "raised event 1 (aggregatetest_test.OrderPaid) would not be saved") {
		t.Errorf("refused raised event: %q", got)
	}
}

// A panicking command, and misuse of the scenario, stop the test with a
// message.
func TestMisuse(t *testing.T) {
	cases := []struct {
		name     string
		scenario func(tb testing.TB)
		want     string
	}{
		{"panic", func(tb testing.TB) {
			aggregatetest.New(tb, newOrder, nil).Given().When(func(o *Order) error { o.Raise(&OrderPaid{}); return nil })
		}, "When panicked: aggregate: Raise(*aggregatetest_test.OrderPaid)"},
		{"then before when", func(tb testing.TB) {
			aggregatetest.New(tb, newOrder, nil).Given().Then()
		}, "Then before When"},
		{"when twice", func(tb testing.TB) {
			aggregatetest.New(tb, newOrder, nil).Given().When(func(*Order) error { return nil }).When(func(*Order) error { return nil })
		}, "When called twice"},
	}
	for _, c := range cases {
		tb := run(c.scenario)
		if got := tb.only(t); !tb.fatal || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q (fatal %v), want a fatal %q", c.name, got, tb.fatal, c.want)
		}
	}
}

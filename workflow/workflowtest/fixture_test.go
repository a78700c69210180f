package workflowtest_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-go/strata/workflow"
	"github.com/strata-go/strata/workflow/workflowtest"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errs   []string
	fatals []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func TestThenReportsADiff(t *testing.T) {
	rec := &recorder{TB: t}
	f := workflowtest.New(rec, checkout, &workflowtest.Config{Key: "A"})
	f.Given().When(Ordered{Order: "A"}).Then(workflowtest.Expect{Events: []any{PaymentOK{}}})
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "- event workflowtest_test.PaymentOK") ||
		!strings.Contains(rec.errs[0], "+ event workflowtest_test.AwaitingPayment") ||
		!strings.Contains(rec.errs[0], `+ schedule "payment" at 2026-01-01T00:15:00Z`) {
		t.Errorf("Then reported %q", rec.errs)
	}
}

func TestThenError(t *testing.T) {
	rec := &recorder{TB: t}
	f := workflowtest.New(rec, checkout, nil)
	f.Given().When(struct{}{}).ThenError(nil)
	if len(rec.errs) != 0 {
		t.Errorf("ThenError(nil) on an error reported %q", rec.errs)
	}
	f.Given().When(Ordered{}).ThenError(errors.New("x"))
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "returned no error") {
		t.Errorf("ThenError on success reported %q", rec.errs)
	}
}

// Deadlines fire in due order (by name for equal times), the instance
// finishing on the first ignores the rest, and time that does not reach
// a deadline fires nothing.
func TestDeadlinesFireInDueOrder(t *testing.T) {
	var fired []string
	wf := workflow.Workflow[int]{
		Name:  "order",
		Route: checkout.Route,
		Decide: func(s int, in workflow.Input) (workflow.Decision, error) {
			if in.Deadline != nil {
				fired = append(fired, in.Deadline.Name)
				return workflow.Decision{Events: []any{in.Deadline.Name}, Finish: in.Deadline.Name == "c"}, nil
			}
			at := in.Time
			return workflow.Decision{Events: []any{"started"}, Schedule: []workflow.Deadline{
				{Name: "c", At: at.Add(2 * time.Minute)}, {Name: "b", At: at.Add(time.Minute)},
				{Name: "a", At: at.Add(time.Minute)}, {Name: "d", At: at.Add(3 * time.Minute)},
			}}, nil
		},
		Evolve: func(s int, ev any) int { return s + 1 },
	}
	f := workflowtest.New(t, wf, nil)
	s := f.Given().When(Ordered{})
	s.WhenTimePasses(30 * time.Second).Then(workflowtest.Expect{Fired: []string{}})
	s.WhenTimePasses(10 * time.Minute).Then(workflowtest.Expect{Events: []any{"a", "b", "c"}, Fired: []string{"a", "b", "c"}, Finish: true})
	if got := strings.Join(fired, ","); got != "a,b,c" {
		t.Errorf("fired %s", got)
	}
	if s.State() != 4 || len(s.Deadlines()) != 0 {
		t.Errorf("state %d, deadlines %v", s.State(), s.Deadlines())
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := workflowtest.NewClock(start)
	soon, later := c.After(time.Minute), c.After(time.Hour)
	select {
	case <-c.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
	c.Advance(2 * time.Minute)
	select {
	case at := <-soon:
		if !at.Equal(start.Add(2 * time.Minute)) {
			t.Errorf("soon fired at %s", at)
		}
	default:
		t.Fatal("After(1m) did not fire after 2m")
	}
	select {
	case <-later:
		t.Fatal("After(1h) fired after 2m")
	default:
	}
	if !c.Now().Equal(start.Add(2 * time.Minute)) {
		t.Errorf("Now = %s", c.Now())
	}
}

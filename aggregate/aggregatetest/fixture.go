package aggregatetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// Config configures a Fixture. The zero value (or nil) means every default.
type Config struct {
	// Registry, when set, takes every event through the registry as the
	// repository would: given events are encoded and decoded (so the
	// aggregate sees what a load gives it), and raised events are encoded
	// (so an event the registry refuses fails the test). Default nil:
	// events are used as written.
	Registry *schema.Registry
	// ID is the aggregate's ID. Default "1".
	ID string
}

// Fixture runs given/when/then scenarios on aggregates that newFn makes.
type Fixture[T aggregate.Aggregate] struct {
	tb    testing.TB
	newFn func(id string) T
	cfg   Config
}

// New returns a fixture reporting to tb. newFn is the function given to
// aggregate.NewRepository.
func New[T aggregate.Aggregate](tb testing.TB, newFn func(id string) T, cfg *Config) *Fixture[T] {
	tb.Helper()
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.ID == "" {
		c.ID = "1"
	}
	return &Fixture[T]{tb: tb, newFn: newFn, cfg: c}
}

// Scenario is one given/when/then run. Make it with Fixture.Given.
type Scenario[T aggregate.Aggregate] struct {
	f      *Fixture[T]
	a      T
	ran    bool
	err    error
	raised []any
}

// Given starts a scenario with an aggregate that has these past events
// (none: a new aggregate, at version 0). A given event the registry
// refuses stops the test.
func (f *Fixture[T]) Given(events ...any) *Scenario[T] {
	f.tb.Helper()
	history := make([]any, len(events))
	for i, ev := range events {
		v, err := f.roundTrip(ev)
		if err != nil {
			f.tb.Fatalf("aggregatetest: given event %d (%T): %v", i+1, ev, err)
		}
		history[i] = v
	}
	return &Scenario[T]{f: f, a: aggregate.Rehydrate(f.newFn(f.cfg.ID), f.cfg.ID, history...)}
}

// roundTrip encodes and decodes ev through the registry, as a save and a
// load would.
func (f *Fixture[T]) roundTrip(ev any) (any, error) {
	reg := f.cfg.Registry
	if reg == nil {
		return ev, nil
	}
	ne, err := reg.Encode(ev)
	if err != nil {
		return nil, err
	}
	return reg.Decode(eventstore.Event{Type: ne.Type, SchemaVersion: ne.SchemaVersion, Data: ne.Data})
}

// When runs the command fn on the aggregate, as Repository.Update would,
// and records its error and the events it raised. A panic in fn stops the
// test.
func (s *Scenario[T]) When(fn func(T) error) *Scenario[T] {
	s.f.tb.Helper()
	if s.ran {
		s.f.tb.Fatalf("aggregatetest: When called twice on one scenario")
	}
	s.ran = true
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.f.tb.Helper()
				s.f.tb.Fatalf("aggregatetest: When panicked: %v", r)
			}
		}()
		s.err = fn(s.a)
	}()
	s.raised = append([]any(nil), s.a.Pending()...)
	return s
}

// Then expects When to have returned nil and raised exactly these events,
// in order (none: no events). Events compare by Go type and JSON encoding,
// which is what the store keeps. A mismatch fails the test with a diff of
// the expected and the raised events.
func (s *Scenario[T]) Then(events ...any) {
	tb := s.f.tb
	tb.Helper()
	if !s.ran {
		tb.Fatalf("aggregatetest: Then before When")
	}
	if s.err != nil {
		tb.Errorf("aggregatetest: When returned an error: %v\nwant events:\n%s", s.err, indent(render(events)))
		return
	}
	if s.f.cfg.Registry != nil {
		for i, ev := range s.raised {
			if _, err := s.f.cfg.Registry.Encode(ev); err != nil {
				tb.Errorf("aggregatetest: raised event %d (%T) would not be saved: %v", i+1, ev, err)
			}
		}
	}
	want, got := render(events), render(s.raised)
	if want != got {
		tb.Errorf("aggregatetest: events differ (-want +got):\n%s", diff(want, got))
	}
}

// ThenError expects When to have returned an error matching target
// (errors.Is); a nil target accepts any error. Whatever fn raised is not
// checked: a command that fails saves nothing.
func (s *Scenario[T]) ThenError(target error) {
	tb := s.f.tb
	tb.Helper()
	if !s.ran {
		tb.Fatalf("aggregatetest: Then before When")
	}
	switch {
	case s.err == nil && target == nil:
		tb.Errorf("aggregatetest: When returned no error, want one; it raised:\n%s", indent(render(s.raised)))
	case s.err == nil:
		tb.Errorf("aggregatetest: When returned no error, want %q; it raised:\n%s", target, indent(render(s.raised)))
	case target != nil && !errors.Is(s.err, target):
		tb.Errorf("aggregatetest: When returned %q, want an error matching %q", s.err, target)
	}
}

// Aggregate returns the scenario's aggregate, after When if it ran, for
// checks of its state.
func (s *Scenario[T]) Aggregate() T { return s.a }

// render writes events one after another, each as its Go type and its
// indented JSON, so that a line diff points at the field that differs.
func render(events []any) string {
	var b strings.Builder
	for _, ev := range events {
		name := "<nil>"
		if t := reflect.TypeOf(ev); t != nil {
			name = t.String()
		}
		data, err := json.MarshalIndent(ev, "", "  ")
		if err != nil {
			data = []byte(fmt.Sprintf("%+v (no JSON: %v)", ev, err))
		}
		fmt.Fprintf(&b, "%s %s\n", name, data)
	}
	return b.String()
}

func indent(s string) string {
	if s == "" {
		return "    (none)\n"
	}
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}

// diff returns a line diff of a and b: lines of both prefixed "  ", lines
// only in a "- ", lines only in b "+ ". It uses a longest common
// subsequence, which is plenty for the few events of a scenario.
func diff(a, b string) string {
	x, y := lines(a), lines(b)
	// lcs[i][j] is the length of the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out.WriteString("    " + x[i] + "\n")
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] > lcs[i+1][j]):
			out.WriteString("  + " + y[j] + "\n")
			j++
		default:
			out.WriteString("  - " + x[i] + "\n")
			i++
		}
	}
	return out.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

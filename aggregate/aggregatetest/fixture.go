package aggregatetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/internal/scenario"
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
		v, err := scenario.RoundTrip(f.cfg.Registry, ev)
		if err != nil {
			f.tb.Fatalf("aggregatetest: given event %d (%T): %v", i+1, ev, err)
		}
		history[i] = v
	}
	return &Scenario[T]{f: f, a: aggregate.Rehydrate(f.newFn(f.cfg.ID), f.cfg.ID, history...)}
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
		tb.Errorf("aggregatetest: When returned an error: %v\nwant events:\n%s", s.err, scenario.Indent(render(events), "(none)"))
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
		tb.Errorf("aggregatetest: events differ (-want +got):\n%s", scenario.Diff(want, got))
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
		tb.Errorf("aggregatetest: When returned no error, want one; it raised:\n%s", scenario.Indent(render(s.raised), "(none)"))
	case s.err == nil:
		tb.Errorf("aggregatetest: When returned no error, want %q; it raised:\n%s", target, scenario.Indent(render(s.raised), "(none)"))
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
		b.WriteString(scenario.Value(ev) + "\n")
	}
	return b.String()
}

package workflowtest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/scenario"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/workflow"
)

// Config configures a Fixture. The zero value (or nil) means every default.
type Config struct {
	// Registry, when set, takes events through the registry as the
	// runner would: given events and When's event are encoded and decoded
	// (so Decide and Evolve see what a load gives them), and the events a
	// decision records or sends are encoded (so one the registry refuses
	// fails the test). Default nil: events are used as written.
	Registry *schema.Registry
	// Key is the instance's key. Default "1".
	Key string
	// Start is the scenario's time before any time passes. Default
	// 2026-01-01T00:00:00Z.
	Start time.Time
}

// Fixture runs given/when/then scenarios on one workflow, in memory: the
// workflow's own Decide and Evolve, the deadlines it schedules kept and
// fired as the runner would, in due order.
type Fixture[S any] struct {
	tb  testing.TB
	wf  workflow.Workflow[S]
	cfg Config
}

// New returns a fixture of wf reporting to tb.
func New[S any](tb testing.TB, wf workflow.Workflow[S], cfg *Config) *Fixture[S] {
	tb.Helper()
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Key == "" {
		c.Key = "1"
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if wf.Decide == nil || wf.Evolve == nil {
		tb.Fatalf("workflowtest: the workflow needs Decide and Evolve")
	}
	return &Fixture[S]{tb: tb, wf: wf, cfg: c}
}

// Scenario is one run: an instance with a past, the inputs given to it
// since, and what the last step decided. Make it with Fixture.Given.
type Scenario[S any] struct {
	f         *Fixture[S]
	state     S
	version   int64
	finished  bool
	now       time.Time
	deadlines map[string]time.Time
	ran       bool
	err       error
	out       Expect
}

// Expect is what a step decided, all its decisions together, for Then.
type Expect struct {
	// Events are the instance's new events.
	Events []any
	// Send are the events sent to other streams.
	Send []workflow.Message
	// Schedule are the deadlines scheduled.
	Schedule []workflow.Deadline
	// Cancel are the deadline names cancelled.
	Cancel []string
	// Fired are the names of the deadlines that fired (WhenTimePasses).
	Fired []string
	// Finish says the instance finished.
	Finish bool
}

// Given starts a scenario with an instance that has these past events
// (none: an instance that has not started).
func (f *Fixture[S]) Given(events ...any) *Scenario[S] {
	f.tb.Helper()
	s := &Scenario[S]{f: f, now: f.cfg.Start, deadlines: map[string]time.Time{}}
	if f.wf.Initial != nil {
		s.state = f.wf.Initial(f.cfg.Key)
	}
	for i, ev := range events {
		v, err := scenario.RoundTrip(f.cfg.Registry, ev)
		if err != nil {
			f.tb.Fatalf("workflowtest: given event %d (%T): %v", i+1, ev, err)
		}
		s.state = f.wf.Evolve(s.state, v)
		s.version++
	}
	return s
}

// GivenDeadlines adds deadlines the instance has scheduled in its past.
func (s *Scenario[S]) GivenDeadlines(deadlines ...workflow.Deadline) *Scenario[S] {
	for _, d := range deadlines {
		s.deadlines[d.Name] = d.At
	}
	return s
}

// Now returns the scenario's time.
func (s *Scenario[S]) Now() time.Time { return s.now }

// State returns the instance's state after the steps so far.
func (s *Scenario[S]) State() S { return s.state }

// Deadlines returns the deadlines pending, by name.
func (s *Scenario[S]) Deadlines() map[string]time.Time {
	out := make(map[string]time.Time, len(s.deadlines))
	for k, v := range s.deadlines {
		out[k] = v
	}
	return out
}

// When gives the instance an event from the log, as the runner would
// (after routing), and records what the decision did. Calling When (or
// WhenTimePasses) again runs a further step on the resulting instance;
// Then checks the last step.
func (s *Scenario[S]) When(ev any) *Scenario[S] {
	tb := s.f.tb
	tb.Helper()
	raw := eventstore.Event{ID: uuid.New(), RecordedAt: s.now}
	v := ev
	if reg := s.f.cfg.Registry; reg != nil {
		ne, err := reg.Encode(ev)
		if err != nil {
			tb.Fatalf("workflowtest: when event (%T): %v", ev, err)
		}
		raw.Type, raw.SchemaVersion, raw.Data = ne.Type, ne.SchemaVersion, ne.Data
		if v, err = reg.Decode(raw); err != nil {
			tb.Fatalf("workflowtest: when event (%T): %v", ev, err)
		}
	}
	s.ran, s.err, s.out = true, nil, Expect{}
	s.step(workflow.Input{Event: v, Raw: raw})
	return s
}

// WhenTimePasses moves the scenario's time on by d, firing the deadlines
// that come due, in due order (by name for equal times), each as an input
// to the decision, and records what the decisions did together.
func (s *Scenario[S]) WhenTimePasses(d time.Duration) *Scenario[S] {
	s.f.tb.Helper()
	s.ran, s.err, s.out = true, nil, Expect{}
	end := s.now.Add(d)
	for s.err == nil {
		name, at, ok := s.nextDue(end)
		if !ok {
			break
		}
		delete(s.deadlines, name)
		if at.After(s.now) {
			s.now = at
		}
		s.out.Fired = append(s.out.Fired, name)
		s.step(workflow.Input{Deadline: &workflow.Fired{Name: name, DueAt: at}})
	}
	s.now = end
	return s
}

func (s *Scenario[S]) nextDue(end time.Time) (string, time.Time, bool) {
	names := make([]string, 0, len(s.deadlines))
	for n, at := range s.deadlines {
		if !at.After(end) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", time.Time{}, false
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := s.deadlines[a].Compare(s.deadlines[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return names[0], s.deadlines[names[0]], true
}

// step runs one decision as the runner does and applies it.
func (s *Scenario[S]) step(in workflow.Input) {
	tb := s.f.tb
	tb.Helper()
	if s.finished {
		return // the runner ignores the inputs of finished instances
	}
	in.Key, in.Version, in.Time = s.f.cfg.Key, s.version, s.now
	var d workflow.Decision
	func() {
		defer func() {
			if r := recover(); r != nil {
				tb.Helper()
				tb.Fatalf("workflowtest: Decide panicked: %v", r)
			}
		}()
		d, s.err = s.f.wf.Decide(s.state, in)
	}()
	if s.err != nil {
		return
	}
	if s.version == 0 && len(d.Events) == 0 && (len(d.Send) > 0 || len(d.Schedule) > 0 || len(d.Cancel) > 0 || d.Finish) {
		s.err = fmt.Errorf("%w: an instance that has not started must record an event to act", workflow.ErrInvalidDecision)
		return
	}
	if reg := s.f.cfg.Registry; reg != nil {
		for i, ev := range d.Events {
			if _, err := reg.Encode(ev); err != nil {
				tb.Errorf("workflowtest: recorded event %d (%T) would not be stored: %v", i+1, ev, err)
			}
		}
		for i, m := range d.Send {
			if _, err := reg.Encode(m.Event); err != nil {
				tb.Errorf("workflowtest: sent event %d (%T) would not be stored: %v", i+1, m.Event, err)
			}
		}
	}
	for _, ev := range d.Events {
		s.state = s.f.wf.Evolve(s.state, ev)
		s.version++
	}
	for _, n := range d.Cancel {
		delete(s.deadlines, n)
	}
	for _, dl := range d.Schedule {
		s.deadlines[dl.Name] = dl.At
	}
	if d.Finish {
		s.finished = true
		clear(s.deadlines)
	}
	s.out.Events = append(s.out.Events, d.Events...)
	s.out.Send = append(s.out.Send, d.Send...)
	s.out.Schedule = append(s.out.Schedule, d.Schedule...)
	s.out.Cancel = append(s.out.Cancel, d.Cancel...)
	s.out.Finish = s.out.Finish || d.Finish
}

// Then expects the last step to have succeeded and decided exactly want
// (Fired is checked only when want.Fired is set). Events compare by Go
// type and JSON encoding, which is what the store keeps; a mismatch fails
// the test with a diff.
func (s *Scenario[S]) Then(want Expect) *Scenario[S] {
	tb := s.f.tb
	tb.Helper()
	if !s.ran {
		tb.Fatalf("workflowtest: Then before When")
	}
	if s.err != nil {
		tb.Errorf("workflowtest: the decision returned an error: %v\nwant:\n%s", s.err, scenario.Indent(render(want), "(nothing)"))
		return s
	}
	got := s.out
	if want.Fired == nil {
		got.Fired = nil
	}
	if w, g := render(want), render(got); w != g {
		tb.Errorf("workflowtest: decisions differ (-want +got):\n%s", scenario.Diff(w, g))
	}
	return s
}

// ThenError expects the last step's decision to have returned an error
// matching target (errors.Is); a nil target accepts any error.
func (s *Scenario[S]) ThenError(target error) {
	tb := s.f.tb
	tb.Helper()
	switch {
	case !s.ran:
		tb.Fatalf("workflowtest: ThenError before When")
	case s.err == nil:
		tb.Errorf("workflowtest: the decision returned no error; it decided:\n%s", scenario.Indent(render(s.out), "(nothing)"))
	case target != nil && !errors.Is(s.err, target):
		tb.Errorf("workflowtest: the decision returned %q, want an error matching %q", s.err, target)
	}
}

// render writes a step's decisions line by line, each event as its Go
// type and indented JSON, so a line diff points at what differs.
func render(e Expect) string {
	var b strings.Builder
	for _, ev := range e.Events {
		fmt.Fprintf(&b, "event %s\n", scenario.Value(ev))
	}
	for _, m := range e.Send {
		fmt.Fprintf(&b, "send to %q: %s\n", m.Stream, scenario.Value(m.Event))
	}
	for _, d := range e.Schedule {
		fmt.Fprintf(&b, "schedule %q at %s\n", d.Name, d.At.UTC().Format(time.RFC3339Nano))
	}
	for _, n := range e.Cancel {
		fmt.Fprintf(&b, "cancel %q\n", n)
	}
	for _, n := range e.Fired {
		fmt.Fprintf(&b, "fired %q\n", n)
	}
	if e.Finish {
		b.WriteString("finish\n")
	}
	return b.String()
}

package workflow

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/strata-go/strata/eventstore"
)

// Workflow is a process manager in the decider shape: Decide says what to
// do about an input given the instance's state, Evolve folds the
// instance's own events into that state. Both are pure functions: no I/O,
// no clock (the input carries the time), so tests call them directly and
// a replay of an instance's stream gives the same state.
//
// S is the instance's state. An instance that has not started has the
// state Initial returns (the zero S when Initial is nil) and version 0;
// it starts with the first decision that records events.
type Workflow[S any] struct {
	// Name names the workflow: its instances' streams are Name + "-" +
	// key (so Name is their category), its subscription is
	// "workflow:"+Name. Required; non-empty, no '-', at most 63 bytes.
	Name string
	// Categories and Types select the events of the log the workflow
	// reacts to (empty: all). The workflow never receives its own
	// instances' events.
	Categories []string
	// Types keeps only events of these types. Default: all.
	Types []string
	// Route returns the key of the instance an event is for (an order
	// ID, a correlation ID), and false for an event no instance is for.
	// ev is the event decoded by the registry (upcast to its current
	// version). Required; a key is non-empty valid UTF-8 of at most 200
	// bytes, else the event fails with ErrInvalidKey.
	Route func(e eventstore.Event, ev any) (key string, ok bool)
	// Initial returns the state of an instance that has not started.
	// Default: the zero S.
	Initial func(key string) S
	// Decide returns what to do about in, given the instance's state.
	// Required. An error (or a panic) rolls the reaction back; the input
	// is retried and, if it keeps failing, parked (an event: a dead
	// letter of the workflow's subscription; a deadline: marked failed).
	Decide func(state S, in Input) (Decision, error)
	// Evolve returns the state after one of the instance's events.
	// Required. It must not fail: the events are facts.
	Evolve func(state S, event any) S
}

// Input is what a decision is about: an event from the log (Event set)
// or a deadline that fired (Deadline set), never both.
type Input struct {
	// Event is the event, decoded by the registry; nil for a deadline.
	Event any
	// Raw is the event as stored (stream, ID, metadata); zero for a
	// deadline.
	Raw eventstore.Event
	// Deadline is the deadline that fired; nil for an event.
	Deadline *Fired
	// Key is the instance's key.
	Key string
	// Version is the instance's stream version before the decision (0: not
	// started).
	Version int64
	// Time is the time of the reaction, by Config.Clock. Schedule
	// deadlines relative to it.
	Time time.Time
}

// Fired is a deadline that came due.
type Fired struct {
	// Name is the deadline's name, as scheduled.
	Name string
	// DueAt is when it was due.
	DueAt time.Time
}

// Decision is what a reaction does, all in one transaction with the
// checkpoint of its input.
type Decision struct {
	// Events are the instance's own events, appended to its stream and
	// folded into its state by Evolve. A decision that starts an instance
	// (version 0) must record at least one; one that does not start it
	// must be empty.
	Events []any
	// Send are events for other streams (commands to aggregates,
	// integration events for a relay), appended with eventstore.Any.
	Send []Message
	// Schedule sets deadlines; a name already scheduled for the instance
	// moves to the new time.
	Schedule []Deadline
	// Cancel removes the instance's deadlines of these names (unknown
	// names are ignored). A deadline cancelled here never fires.
	Cancel []string
	// Finish ends the instance: its deadlines are removed, and later
	// inputs for it are ignored.
	Finish bool
}

// Message is an event for another stream.
type Message struct {
	// Stream is the stream to append to. Required.
	Stream string
	// Event is a value of a type registered in the workflow's registry.
	Event any
}

// Deadline asks for a Fired input at a time.
type Deadline struct {
	// Name names the deadline within its instance. Required; valid UTF-8
	// of at most 200 bytes.
	Name string
	// At is when it fires.
	At time.Time
}

// Send is shorthand for a Decision that sends one event to a stream.
func Send(stream string, ev any) Message { return Message{Stream: stream, Event: ev} }

// Errors callers branch on.
var (
	// ErrInvalidWorkflow is returned by New for a Workflow or Config it
	// cannot run (the error names the field).
	ErrInvalidWorkflow = errors.New("workflow: invalid workflow")
	// ErrInvalidDecision is matched by the error of a reaction whose
	// decision cannot be carried out (a message without a stream, a
	// deadline without a name or time, a decision that starts nothing
	// but sends); nothing of it is written.
	ErrInvalidDecision = errors.New("workflow: invalid decision")
	// ErrInvalidKey is matched by the error of a reaction whose Route
	// returned a key that cannot name a stream.
	ErrInvalidKey = errors.New("workflow: invalid instance key")
)

// MaxKeyLength is the longest instance key (and deadline name), in bytes.
const MaxKeyLength = 200

func (wf *Workflow[S]) check() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidWorkflow, fmt.Sprintf(format, args...)))
	}
	switch {
	case wf.Name == "":
		bad("Name is required")
	case strings.Contains(wf.Name, "-") || !validText(wf.Name) || len(wf.Name) > 63:
		bad("Name %q: want valid text of at most 63 bytes without '-'", wf.Name)
	}
	if wf.Route == nil {
		bad("%q: Route is required", wf.Name)
	}
	if wf.Decide == nil {
		bad("%q: Decide is required", wf.Name)
	}
	if wf.Evolve == nil {
		bad("%q: Evolve is required", wf.Name)
	}
	for _, c := range wf.Categories {
		if c == wf.Name {
			bad("%q: Categories names the workflow's own category", wf.Name)
		}
	}
	return errors.Join(errs...)
}

// checkKey refuses a key that cannot be part of a stream ID.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLength || !validText(key) {
		return fmt.Errorf("%w: %q: want non-empty valid UTF-8 without NUL of at most %d bytes", ErrInvalidKey, key, MaxKeyLength)
	}
	return nil
}

// check refuses a decision that cannot be carried out, before anything
// is written. started says whether the instance has events.
func (d *Decision) check(started bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidDecision, fmt.Sprintf(format, args...))
	}
	if !started && len(d.Events) == 0 && (len(d.Send) > 0 || len(d.Schedule) > 0 || len(d.Cancel) > 0 || d.Finish) {
		return bad("an instance that has not started must record an event to act")
	}
	for i, m := range d.Send {
		if m.Stream == "" || !validText(m.Stream) {
			return bad("message %d: stream %q is not a stream ID", i+1, m.Stream)
		}
		if m.Event == nil {
			return bad("message %d to %q has no event", i+1, m.Stream)
		}
	}
	for i, ev := range d.Events {
		if ev == nil {
			return bad("event %d is nil", i+1)
		}
	}
	if d.Finish && len(d.Schedule) > 0 {
		return bad("a decision that finishes the instance cannot schedule deadlines")
	}
	seen := map[string]bool{}
	for i, dl := range d.Schedule {
		if dl.Name == "" || len(dl.Name) > MaxKeyLength || !validText(dl.Name) {
			return bad("deadline %d: name %q: want non-empty valid UTF-8 of at most %d bytes", i+1, dl.Name, MaxKeyLength)
		}
		if dl.At.IsZero() {
			return bad("deadline %q has no time", dl.Name)
		}
		if seen[dl.Name] {
			return bad("deadline %q scheduled twice", dl.Name)
		}
		seen[dl.Name] = true
	}
	for _, name := range d.Cancel {
		if seen[name] {
			return bad("deadline %q both scheduled and cancelled", name)
		}
		if !validText(name) {
			return bad("cancelled deadline %q is not valid UTF-8", name)
		}
	}
	return nil
}

// empty reports whether the decision does nothing.
func (d *Decision) empty() bool {
	return len(d.Events) == 0 && len(d.Send) == 0 && len(d.Schedule) == 0 && len(d.Cancel) == 0 && !d.Finish
}

func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

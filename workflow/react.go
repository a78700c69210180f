package workflow

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/telemetry"
)

const (
	statusRunning  = "running"
	statusFinished = "finished"
)

// instance is an instance's state as a reaction sees it: loaded under its
// lock, in the reaction's transaction, and kept up to date by each
// reaction of the transaction.
type instance[S any] struct {
	key, stream string
	state       S
	version     int64
	status      string          // "" (not started), running, finished
	correlation string          // of its first event
	handled     map[string]bool // the inputs its events were caused by
}

// load reads an instance's status and, for a running one, folds its
// stream into its state. The caller holds the instance's lock.
func (r *Runner[S]) load(ctx context.Context, tx pgx.Tx, key string) (*instance[S], error) {
	inst := &instance[S]{key: key, stream: r.StreamID(key), handled: map[string]bool{}}
	if r.wf.Initial != nil {
		inst.state = r.wf.Initial(key)
	}
	err := tx.QueryRow(ctx, r.sql.instanceStatus, r.wf.Name, key).Scan(&inst.status)
	if errors.Is(err, pgx.ErrNoRows) {
		return inst, nil
	}
	if err != nil {
		return nil, fmt.Errorf("workflow %q: load instance %q: %w", r.wf.Name, key, err)
	}
	if inst.status == statusFinished {
		return inst, nil
	}
	for e, err := range r.store.ReadStreamTx(ctx, tx, inst.stream, 0) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("workflow %q: load instance %q: %w", r.wf.Name, key, err)
		}
		ev, err := r.reg.Decode(e)
		if err != nil {
			return nil, fmt.Errorf("workflow %q: load instance %q: event %d: %w", r.wf.Name, key, e.Version, err)
		}
		if inst.state, err = r.evolve(inst.state, ev); err != nil {
			return nil, err
		}
		inst.version = e.Version
		if e.Version == 1 {
			inst.correlation = e.Metadata.CorrelationID
		}
		if c := e.Metadata.CausationID; c != "" {
			inst.handled[c] = true
		}
	}
	return inst, nil
}

// evolve calls the workflow's Evolve, turning a panic into an error.
func (r *Runner[S]) evolve(s S, ev any) (out S, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = storeview.Recovered(r.log, "workflow evolve", v)
		}
	}()
	return r.wf.Evolve(s, ev), nil
}

// decide calls the workflow's Decide, turning a panic into an error.
func (r *Runner[S]) decide(s S, in Input) (d Decision, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = storeview.Recovered(r.log, "workflow decide", v)
		}
	}()
	return r.wf.Decide(s, in)
}

// idSpace is the UUIDv5 namespace of the IDs of events a reaction writes.
var idSpace = uuid.MustParse("6f1f2b1e-5a0c-4f54-9b8e-2d7c8f0a4c11")

// eventID derives the ID of the i-th event of a kind ('e': the
// instance's, 's': sent) that a reaction to input writes, so that a
// second reaction to the same input could not store it twice.
func (r *Runner[S]) eventID(input string, kind byte, i int) uuid.UUID {
	return uuid.NewSHA1(idSpace, []byte(r.wf.Name+"\x00"+input+"\x00"+string(kind)+strconv.Itoa(i)))
}

// react runs one decision about in for inst and writes it in tx: the
// instance's events (expecting its version), the sent events, the
// deadline changes and the instance's row. input identifies the input (an
// event ID, or a deadline's) for the derived event IDs and the causation.
func (r *Runner[S]) react(ctx context.Context, tx pgx.Tx, inst *instance[S], in Input, input string) (rc Reaction, err error) {
	rc = Reaction{Workflow: r.wf.Name, Key: inst.key, Input: input, InputType: in.Raw.Type, Deadline: in.Deadline}
	if in.Deadline != nil {
		rc.InputType = "deadline"
	}
	if inst.status == statusFinished || inst.handled[input] {
		rc.Skipped = true
		return rc, nil
	}
	kind := "event"
	if in.Deadline != nil {
		kind = "deadline"
	} else {
		ctx = telemetry.Extract(ctx, in.Raw.Metadata.Values)
	}
	started := time.Now()
	ctx, span := r.tel.tracer.Start(ctx, SpanReaction, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String(AttrWorkflow, r.wf.Name), attribute.String(AttrInstance, inst.key),
			attribute.String(AttrInputKind, kind), attribute.String(AttrInput, input)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		r.tel.reaction(ctx, r.wf.Name, kind, err, time.Since(started))
	}()

	in.Version = inst.version
	d, err := r.decide(inst.state, in)
	if err != nil {
		return rc, fmt.Errorf("workflow %q: instance %q: decide on %s: %w", r.wf.Name, inst.key, input, err)
	}
	if err := d.check(inst.version > 0); err != nil {
		return rc, fmt.Errorf("workflow %q: instance %q: on %s: %w", r.wf.Name, inst.key, input, err)
	}
	if d.empty() {
		return rc, nil
	}
	md := eventstore.Metadata{CorrelationID: in.Raw.Metadata.CorrelationID, CausationID: input}
	if md.CorrelationID == "" {
		md.CorrelationID = inst.correlation
	}
	if err := r.writeEvents(ctx, tx, inst, d.Events, input, md); err != nil {
		return rc, err
	}
	for i, m := range d.Send {
		ne, err := r.reg.Encode(m.Event)
		if err != nil {
			return rc, fmt.Errorf("workflow %q: instance %q: message %d to %q: %w", r.wf.Name, inst.key, i+1, m.Stream, err)
		}
		ne.ID, ne.Metadata = r.eventID(input, 's', i), md
		if _, err := r.store.AppendTx(ctx, tx, m.Stream, eventstore.Any, ne); err != nil {
			return rc, fmt.Errorf("workflow %q: instance %q: send to %q: %w", r.wf.Name, inst.key, m.Stream, err)
		}
	}
	if err := r.writeDeadlines(ctx, tx, inst, &d); err != nil {
		return rc, err
	}
	if d.Finish {
		inst.status = statusFinished
	} else {
		inst.status = statusRunning
	}
	if _, err := tx.Exec(ctx, r.sql.upsertInstance, r.wf.Name, inst.key, inst.status, inst.version, inst.correlation); err != nil {
		return rc, fmt.Errorf("workflow %q: instance %q: %w", r.wf.Name, inst.key, err)
	}
	inst.handled[input] = true
	rc.Events, rc.Sent, rc.Scheduled, rc.Cancelled, rc.Finished = len(d.Events), len(d.Send), len(d.Schedule), len(d.Cancel), d.Finish
	return rc, nil
}

// writeEvents appends the instance's new events and folds them into its
// state.
func (r *Runner[S]) writeEvents(ctx context.Context, tx pgx.Tx, inst *instance[S], events []any, input string, md eventstore.Metadata) error {
	if len(events) == 0 {
		return nil
	}
	news := make([]eventstore.NewEvent, len(events))
	for i, ev := range events {
		ne, err := r.reg.Encode(ev)
		if err != nil {
			return fmt.Errorf("workflow %q: instance %q: event %d (%T): %w", r.wf.Name, inst.key, i+1, ev, err)
		}
		ne.ID, ne.Metadata = r.eventID(input, 'e', i), md
		news[i] = ne
	}
	expected := eventstore.NoStream
	if inst.version > 0 {
		expected = eventstore.Exactly(inst.version)
	}
	res, err := r.store.AppendTx(ctx, tx, inst.stream, expected, news...)
	if err != nil {
		return fmt.Errorf("workflow %q: instance %q: %w", r.wf.Name, inst.key, err)
	}
	if inst.version == 0 {
		inst.correlation = md.CorrelationID
	}
	inst.version = res.Version
	for _, ev := range events {
		var err error
		if inst.state, err = r.evolve(inst.state, ev); err != nil {
			return err
		}
	}
	return nil
}

// writeDeadlines cancels and schedules the instance's deadlines (all of
// them go when it finishes), and wakes the deadline workers when it
// scheduled any.
func (r *Runner[S]) writeDeadlines(ctx context.Context, tx pgx.Tx, inst *instance[S], d *Decision) error {
	wrap := func(err error) error {
		return fmt.Errorf("workflow %q: instance %q: deadlines: %w", r.wf.Name, inst.key, err)
	}
	if d.Finish {
		if _, err := tx.Exec(ctx, r.sql.cancelAll, r.wf.Name, inst.key); err != nil {
			return wrap(err)
		}
		return nil
	}
	if len(d.Cancel) > 0 {
		if _, err := tx.Exec(ctx, r.sql.cancel, r.wf.Name, inst.key, d.Cancel); err != nil {
			return wrap(err)
		}
	}
	if len(d.Schedule) == 0 {
		return nil
	}
	names, times := make([]string, len(d.Schedule)), make([]time.Time, len(d.Schedule))
	for i, dl := range d.Schedule {
		names[i], times[i] = dl.Name, dl.At
	}
	if _, err := tx.Exec(ctx, r.sql.schedule, r.wf.Name, inst.key, names, times); err != nil {
		return wrap(err)
	}
	if _, err := tx.Exec(ctx, r.sql.notify, r.ch, r.wf.Name); err != nil {
		return wrap(err)
	}
	return nil
}

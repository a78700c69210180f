package eventstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/internal/instrument"
	"github.com/strata-go/strata/telemetry"
)

// storeTelemetry is a Store's tracer and instruments, with the attribute
// sets of the stream categories it has seen, so that recording an append's
// metrics allocates nothing once its category is known.
type storeTelemetry struct {
	mp     metric.MeterProvider
	tp     trace.TracerProvider
	tracer trace.Tracer
	in     *instrument.Set

	mu   sync.RWMutex
	cats map[string]*categoryAttrs
}

// maxCachedCategories bounds the cache of attribute sets: stream IDs whose
// "category" is unique (IDs without a meaningful prefix) would otherwise
// grow it without end. Categories past it are recorded all the same, with
// attribute sets made per call.
const maxCachedCategories = 1024

// categoryAttrs holds the measurement options of one stream category.
type categoryAttrs struct {
	duration [4][]metric.RecordOption // by outcome: ok, conflict, invalid, error
	events   []metric.AddOption
}

var appendOutcomes = [4]string{telemetry.OutcomeOK, telemetry.OutcomeConflict, telemetry.OutcomeInvalid, telemetry.OutcomeError}

// appendSpanOptions are the start options of every append span, made once.
var appendSpanOptions = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

func newStoreTelemetry(c Config) *storeTelemetry {
	mp, tp := c.MeterProvider, c.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &storeTelemetry{
		mp:     mp,
		tp:     tp,
		tracer: telemetry.Tracer(tp),
		in:     instrument.New(mp),
		cats:   map[string]*categoryAttrs{},
	}
}

func (t *storeTelemetry) category(cat string) *categoryAttrs {
	t.mu.RLock()
	a := t.cats[cat]
	t.mu.RUnlock()
	if a != nil {
		return a
	}
	a = &categoryAttrs{}
	c := attribute.String(telemetry.AttrStreamCategory, cat)
	for i, o := range appendOutcomes {
		a.duration[i] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(c, attribute.String(telemetry.AttrOutcome, o)))}
	}
	a.events = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(c))}
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev := t.cats[cat]; prev != nil {
		return prev
	}
	if len(t.cats) < maxCachedCategories {
		t.cats[cat] = a
	}
	return a
}

// tracedAppend is appendTo inside a strata.append span, with the append's
// metrics. When ctx carries a valid span context, each event's metadata
// gets the trace context (unless it has one already); the caller's events
// and maps are copied for it, never modified. Without a span context
// nothing is copied.
func (s *Store) tracedAppend(ctx context.Context, q querier, streamID string, expected ExpectedVersion, events []NewEvent) (AppendResult, error) {
	t := s.tel
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, telemetry.SpanAppend, appendSpanOptions...)
	if span.SpanContext().IsValid() {
		events = withTraceContext(ctx, events)
	}
	res, err := s.appendTo(ctx, q, streamID, expected, events)

	cat := Category(streamID)
	a := t.category(cat)
	outcome := 0
	switch {
	case err == nil:
	case errors.Is(err, ErrConflict), errors.Is(err, ErrOutOfOrder):
		outcome = 1 // both say: another writer got there first
	case errors.Is(err, ErrInvalidEvent):
		outcome = 2
	default:
		outcome = 3
	}
	t.in.AppendDuration.Record(ctx, time.Since(start).Seconds(), a.duration[outcome]...)
	if err == nil {
		t.in.AppendEvents.Add(ctx, int64(len(events)), a.events...)
	}
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(telemetry.AttrStreamID, streamID),
			attribute.String(telemetry.AttrStreamCategory, cat),
			attribute.Int(telemetry.AttrEventCount, len(events)),
			attribute.String(telemetry.AttrDBSystem, "postgresql"),
		)
		if err == nil {
			span.SetAttributes(attribute.Int64(telemetry.AttrStreamVersion, res.Version))
		} else {
			span.RecordError(err)
			span.SetStatus(codes.Error, appendOutcomes[outcome])
		}
	}
	span.End()
	return res, err
}

// withTraceContext returns a copy of events whose metadata carries the
// trace context of ctx (telemetry.WithTraceContext).
func withTraceContext(ctx context.Context, events []NewEvent) []NewEvent {
	out := make([]NewEvent, len(events))
	for i, ev := range events {
		ev.Metadata.Values = telemetry.WithTraceContext(ctx, ev.Metadata.Values)
		out[i] = ev
	}
	return out
}

// subscriptionTelemetry holds a subscription's instruments.
type subscriptionTelemetry struct {
	in *instrument.Set
}

// partitionMetrics records one partition's measurements with attribute
// sets made once.
type partitionMetrics struct {
	in        *instrument.Set
	add       []metric.AddOption
	rec       []metric.RecordOption
	transient [2][]metric.AddOption // errors, by transient false/true
}

func (t *subscriptionTelemetry) partition(name string, p int) partitionMetrics {
	sub, part := attribute.String(telemetry.AttrSubscription, name), attribute.Int(telemetry.AttrPartition, p)
	set := attribute.NewSet(sub, part)
	m := partitionMetrics{
		in:  t.in,
		add: []metric.AddOption{metric.WithAttributeSet(set)},
		rec: []metric.RecordOption{metric.WithAttributeSet(set)},
	}
	for i, tr := range []bool{false, true} {
		m.transient[i] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(sub, part, attribute.Bool(telemetry.AttrTransient, tr)))}
	}
	return m
}

// batch records a committed batch.
func (m partitionMetrics) batch(events, parked int, d time.Duration) {
	ctx := context.Background()
	if events > 0 {
		m.in.SubscriptionEvents.Add(ctx, int64(events), m.add...)
	}
	if parked > 0 {
		m.in.SubscriptionDeadLetters.Add(ctx, int64(parked), m.add...)
	}
	if d > 0 {
		m.in.SubscriptionBatchDuration.Record(ctx, d.Seconds(), m.rec...)
	}
}

// failure records a failed handler attempt.
func (m partitionMetrics) failure(transient bool) {
	i := 0
	if transient {
		i = 1
	}
	m.in.SubscriptionErrors.Add(context.Background(), 1, m.transient[i]...)
}

// metricsMaxLag is how far behind the lag gauges count (ProbeOptions.MaxLag).
const metricsMaxLag = 10_000

// registerLag registers the callback that observes the lag gauges of the
// partitions this process owns, counted by the database as
// ProbeSubscription counts them (up to metricsMaxLag entries of the log
// per partition), and only for those partitions. The count runs only when
// metrics are collected.
func (sub *Subscription) registerLag() (metric.Registration, error) {
	in := sub.tel.in
	return in.Meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		sts, err := sub.store.ProbeSubscription(ctx, sub.cfg.Name, ProbeOptions{Owner: sub.cfg.Owner, MaxLag: metricsMaxLag})
		if err != nil {
			return err
		}
		for _, st := range sts {
			attrs := metric.WithAttributes(attribute.String(telemetry.AttrSubscription, st.Name), attribute.Int(telemetry.AttrPartition, st.Partition))
			o.ObserveInt64(in.SubscriptionLag, st.Lag, attrs)
			o.ObserveFloat64(in.SubscriptionLagSeconds, st.LagTime.Seconds(), attrs)
		}
		return nil
	}, in.SubscriptionLag, in.SubscriptionLagSeconds)
}

// isTransient applies the subscription's Transient classifier.
func (sub *Subscription) isTransient(err error) bool {
	return errors.Is(err, ErrUnavailable) || sub.cfg.Transient != nil && sub.cfg.Transient(err)
}

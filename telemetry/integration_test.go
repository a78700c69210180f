package telemetry_test

// Tests of the telemetry wired into the store, its subscriptions, the
// relay, the deduplicating consumer and the projection runner, against the
// real Postgres (internal/pgtest) and Watermill's GoChannel.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/telemetry"
)

// run runs f in a goroutine until the test ends; an error other than the
// end of its context fails the test.
func run(t *testing.T, name string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
	})
}

func newEvent(typ, data string) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, Data: []byte(data)}
}

// TestOneTrace: an append under a root span, the relay's publish through
// GoChannel, the consumer's handling through outbox.Deduplicator and the
// event the consumer appends are one trace, each span the child of the
// one before; the stored events carry the trace in their metadata.
func TestOneTrace(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, TracerProvider: tp})
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })

	// The payment service: consumes OrderPlaced, appends PaymentCompleted
	// in the deduplicator's transaction with the message's context.
	dedup, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "payment", Schema: db.Schema, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	h := router.AddConsumerHandler("payment", "order", pubsub, func(msg *message.Message) error {
		tx, ok := outbox.TxFromContext(msg.Context())
		if !ok {
			return errors.New("no transaction in the message's context")
		}
		stream, _, _ := outbox.StreamVersion(msg)
		ev := newEvent("PaymentCompleted", `{"amount":12}`)
		ev.Metadata.CausationID = msg.UUID
		_, err := store.AppendTx(msg.Context(), tx, "payment-"+strings.TrimPrefix(stream, "order-"), eventstore.NoStream, ev)
		return err
	})
	h.AddMiddleware(dedup.Middleware)
	run(t, "router", router.Run)
	<-router.Running()

	relay := outbox.NewRelay(store, pubsub, &outbox.Config{PollInterval: 50 * time.Millisecond})
	run(t, "relay", relay.Run)

	// The request: a root span around the append.
	ctx, root := tp.Tracer("test").Start(t.Context(), "POST /orders")
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, newEvent("OrderPlaced", `{"total":12}`)); err != nil {
		t.Fatal(err)
	}
	root.End()
	traceID := root.SpanContext().TraceID()

	var payment eventstore.Event
	// The relay reads the log gap-safely: any open transaction on the
	// server (other packages' tests too) may hold it back for a while.
	pgtest.WaitFor(t, "the payment event", 60*time.Second, func() bool {
		for e, err := range store.ReadStream(t.Context(), "payment-1", 0) {
			if err == nil {
				payment = e
				return true
			}
		}
		return false
	})
	// The chain: root → append(order) → publish → consume → append(payment).
	// Wait for every span of it to have ended (been exported): the publish
	// span ends only after the consumer acked, that is after the consume
	// span and after the payment event committed.
	var byName map[string][]tracetest.SpanStub
	lookup := func(name, stream string) (tracetest.SpanStub, bool) {
		for _, s := range byName[name] {
			for _, a := range s.Attributes {
				if a.Key == telemetry.AttrStreamID && a.Value.AsString() == stream {
					return s, true
				}
			}
		}
		return tracetest.SpanStub{}, false
	}
	chainSpans := [][2]string{
		{telemetry.SpanAppend, "order-1"}, {telemetry.SpanRelayPublish, "order-1"},
		{telemetry.SpanConsume, "order-1"}, {telemetry.SpanAppend, "payment-1"},
	}
	pgtest.WaitFor(t, "the spans of the chain", 30*time.Second, func() bool {
		byName = map[string][]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			byName[s.Name] = append(byName[s.Name], s)
		}
		for _, c := range chainSpans {
			if _, ok := lookup(c[0], c[1]); !ok {
				return false
			}
		}
		return true
	})
	find := func(name, stream string) tracetest.SpanStub {
		t.Helper()
		s, ok := lookup(name, stream)
		if !ok {
			t.Fatalf("no %s span for %s; spans: %v", name, stream, names(exp.GetSpans()))
		}
		return s
	}
	appendOrder := find(telemetry.SpanAppend, "order-1")
	publish := find(telemetry.SpanRelayPublish, "order-1")
	consume := find(telemetry.SpanConsume, "order-1")
	appendPayment := find(telemetry.SpanAppend, "payment-1")
	chain := []struct {
		span   tracetest.SpanStub
		parent trace.SpanContext
		kind   trace.SpanKind
	}{
		{appendOrder, root.SpanContext(), trace.SpanKindClient},
		{publish, appendOrder.SpanContext, trace.SpanKindProducer},
		{consume, publish.SpanContext, trace.SpanKindConsumer},
		{appendPayment, consume.SpanContext, trace.SpanKindClient},
	}
	for _, c := range chain {
		if c.span.SpanContext.TraceID() != traceID {
			t.Errorf("%s is in trace %s, want %s", c.span.Name, c.span.SpanContext.TraceID(), traceID)
		}
		if c.span.Parent.SpanID() != c.parent.SpanID() {
			t.Errorf("%s's parent is %s, want %s", c.span.Name, c.span.Parent.SpanID(), c.parent.SpanID())
		}
		if c.span.SpanKind != c.kind {
			t.Errorf("%s is of kind %s, want %s", c.span.Name, c.span.SpanKind, c.kind)
		}
	}

	// The stored events carry the trace: the order event the append
	// span's context, the payment event the consumer's append span's.
	var order eventstore.Event
	for e, err := range store.ReadStream(t.Context(), "order-1", 0) {
		if err != nil {
			t.Fatal(err)
		}
		order = e
	}
	for _, c := range []struct {
		e    eventstore.Event
		span tracetest.SpanStub
	}{{order, appendOrder}, {payment, appendPayment}} {
		sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), c.e.Metadata.Values))
		if sc.TraceID() != traceID || sc.SpanID() != c.span.SpanContext.SpanID() {
			t.Errorf("%s's metadata %v carries %s/%s, want %s/%s", c.e.Type, c.e.Metadata.Values, sc.TraceID(), sc.SpanID(), traceID, c.span.SpanContext.SpanID())
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// TestAppendWithoutSpan: an append whose context has no span stores no
// trace context and leaves the caller's metadata map alone; one with a
// span does not modify the caller's events or maps either, and keeps a
// traceparent the caller set.
func TestAppendWithoutSpan(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, TracerProvider: tp})
	ctx := t.Context()

	untraced := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema}) // global no-op tracer
	values := map[string]string{"user": "ann"}
	ev := newEvent("A", `{}`)
	ev.Metadata.Values = values
	if _, err := untraced.Append(ctx, "plain-1", eventstore.NoStream, ev); err != nil {
		t.Fatal(err)
	}

	ctx, root := tp.Tracer("test").Start(ctx, "root")
	events := []eventstore.NewEvent{ev, newEvent("B", `{}`)}
	mine := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	events[1].Metadata.Values = map[string]string{telemetry.KeyTraceparent: mine}
	if _, err := store.Append(ctx, "traced-1", eventstore.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	root.End()
	if len(values) != 1 || events[0].Metadata.Values["traceparent"] != "" || events[1].Metadata.Values[telemetry.KeyTraceparent] != mine {
		t.Fatalf("caller's events modified: %v %v", events[0].Metadata.Values, events[1].Metadata.Values)
	}

	read := func(stream string) []eventstore.Event {
		var out []eventstore.Event
		for e, err := range store.ReadStream(t.Context(), stream, 0) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
		return out
	}
	if got := read("plain-1"); len(got) != 1 || len(got[0].Metadata.Values) != 1 || got[0].Metadata.Values["user"] != "ann" {
		t.Fatalf("untraced event stored with %v", got[0].Metadata.Values)
	}
	got := read("traced-1")
	if sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), got[0].Metadata.Values)); sc.TraceID() != root.SpanContext().TraceID() || got[0].Metadata.Values["user"] != "ann" {
		t.Fatalf("traced event stored with %v", got[0].Metadata.Values)
	}
	if got[1].Metadata.Values[telemetry.KeyTraceparent] != mine {
		t.Fatalf("the caller's traceparent was replaced: %v", got[1].Metadata.Values)
	}
}

// collect reads the metrics and indexes their data points by metric name.
func collect(t *testing.T, r sdkmetric.Reader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != telemetry.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// has reports whether set holds every attribute of want.
func has(set attribute.Set, want ...attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum adds up a counter's points with the given attributes (-1 when the
// metric is absent).
func sum(ms map[string]metricdata.Metrics, name string, want ...attribute.KeyValue) int64 {
	m, ok := ms[name]
	if !ok {
		return -1
	}
	var n int64
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if has(p.Attributes, want...) {
			n += p.Value
		}
	}
	return n
}

// count adds up a histogram's observation counts with the given attributes.
func count(ms map[string]metricdata.Metrics, name string, want ...attribute.KeyValue) uint64 {
	var n uint64
	if m, ok := ms[name]; ok {
		for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
			if has(p.Attributes, want...) {
				n += p.Count
			}
		}
	}
	return n
}

// gauge returns a gauge's point with the given attributes.
func gauge[N int64 | float64](ms map[string]metricdata.Metrics, name string, want ...attribute.KeyValue) (N, bool) {
	if m, ok := ms[name]; ok {
		for _, p := range m.Data.(metricdata.Gauge[N]).DataPoints {
			if has(p.Attributes, want...) {
				return p.Value, true
			}
		}
	}
	return 0, false
}

// TestMetrics: appends and a subscription record the documented metrics:
// append durations by category and outcome, appended events, handled
// events and batch durations, handler errors and dead letters, and lag in
// events and seconds that grows while the handler is stuck and returns
// to zero once it has caught up.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, MeterProvider: mp})
	ctx := t.Context()

	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, newEvent("OrderPlaced", `{}`), newEvent("OrderPaid", `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, newEvent("OrderPlaced", `{}`)); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want a conflict, got %v", err)
	}
	if _, err := store.Append(ctx, "order-2", eventstore.NoStream, newEvent("Bad", `{}`)); err != nil {
		t.Fatal(err)
	}
	cat := attribute.String(telemetry.AttrStreamCategory, "order")
	ms := collect(t, reader)
	if n := count(ms, telemetry.MetricAppendDuration, cat, attribute.String(telemetry.AttrOutcome, telemetry.OutcomeOK)); n != 2 {
		t.Errorf("%s ok: %d observations, want 2", telemetry.MetricAppendDuration, n)
	}
	if n := count(ms, telemetry.MetricAppendDuration, cat, attribute.String(telemetry.AttrOutcome, telemetry.OutcomeConflict)); n != 1 {
		t.Errorf("%s conflict: %d observations, want 1", telemetry.MetricAppendDuration, n)
	}
	if n := sum(ms, telemetry.MetricAppendEvents, cat); n != 3 {
		t.Errorf("%s: %d, want 3", telemetry.MetricAppendEvents, n)
	}

	// A subscription whose handler blocks on OrderPaid until released and
	// always fails on Bad (parked after two attempts).
	release := make(chan struct{})
	var blocked atomic.Bool
	sub, err := store.Subscription(eventstore.SubscriptionConfig{
		Name: "metrics", BatchSize: 1, MaxAttempts: 2, RetryBackoff: time.Millisecond, PollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "subscription", func(ctx context.Context) error {
		return sub.Run(ctx, func(ctx context.Context, _ pgx.Tx, events []eventstore.Event) error {
			for _, e := range events {
				switch e.Type {
				case "OrderPaid":
					blocked.Store(true)
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
				case "Bad":
					return fmt.Errorf("bad event %s", e.ID)
				}
			}
			return nil
		})
	})
	subAttrs := []attribute.KeyValue{attribute.String(telemetry.AttrSubscription, "metrics"), attribute.Int(telemetry.AttrPartition, 0)}

	// Stuck on OrderPaid: OrderPaid and Bad are behind.
	pgtest.WaitFor(t, "the handler to block", 60*time.Second, blocked.Load)
	pgtest.WaitFor(t, "a lag of 2 events", 60*time.Second, func() bool {
		ms = collect(t, reader)
		lag, ok := gauge[int64](ms, telemetry.MetricSubscriptionLag, subAttrs...)
		secs, _ := gauge[float64](ms, telemetry.MetricSubscriptionLagSeconds, subAttrs...)
		return ok && lag == 2 && secs > 0
	})
	if n := sum(ms, telemetry.MetricSubscriptionEvents, subAttrs...); n != 1 {
		t.Errorf("%s while blocked: %d, want 1 (OrderPlaced)", telemetry.MetricSubscriptionEvents, n)
	}

	close(release)
	pgtest.WaitFor(t, "the subscription to catch up", 60*time.Second, func() bool {
		ms = collect(t, reader)
		lag, ok := gauge[int64](ms, telemetry.MetricSubscriptionLag, subAttrs...)
		secs, _ := gauge[float64](ms, telemetry.MetricSubscriptionLagSeconds, subAttrs...)
		return ok && lag == 0 && secs == 0 && sum(ms, telemetry.MetricSubscriptionDeadLetters, subAttrs...) == 1
	})
	if n := sum(ms, telemetry.MetricSubscriptionEvents, subAttrs...); n != 2 {
		t.Errorf("%s: %d, want 2", telemetry.MetricSubscriptionEvents, n)
	}
	if n := count(ms, telemetry.MetricSubscriptionBatchDuration, subAttrs...); n < 2 {
		t.Errorf("%s: %d observations, want at least 2", telemetry.MetricSubscriptionBatchDuration, n)
	}
	if n := sum(ms, telemetry.MetricSubscriptionErrors, append(subAttrs, attribute.Bool(telemetry.AttrTransient, false))...); n != 2 {
		t.Errorf("%s: %d, want 2 (two attempts on Bad)", telemetry.MetricSubscriptionErrors, n)
	}
	for name, m := range ms {
		if !strings.HasPrefix(name, "strata.") {
			t.Errorf("undocumented metric %s", name)
		}
		for _, d := range telemetry.Metrics() {
			if d.Name == name && d.Unit != m.Unit {
				t.Errorf("%s in %q, documented %q", name, m.Unit, d.Unit)
			}
		}
	}
}

// flakyPublisher fails every Publish while failing is set.
type flakyPublisher struct {
	message.Publisher
	failing atomic.Bool
}

func (p *flakyPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.failing.Load() {
		return errors.New("broker unreachable")
	}
	return p.Publisher.Publish(topic, msgs...)
}

// TestRelayTelemetry: the relay's published and error counters, and its
// Check: failing while not running and while the broker fails (with the
// error and since when), ready once publishing again.
func TestRelayTelemetry(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, MeterProvider: mp})
	ctx := t.Context()
	pub := &flakyPublisher{Publisher: gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})}
	relay := outbox.NewRelay(store, pub, &outbox.Config{PollInterval: 50 * time.Millisecond, RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond})

	if h := relay.Check(ctx); h.State != telemetry.Failing || !strings.Contains(h.Reason, "not running") {
		t.Fatalf("before Run: %+v", h)
	}
	pub.failing.Store(true)
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, newEvent("OrderPlaced", `{}`)); err != nil {
		t.Fatal(err)
	}
	run(t, "relay", relay.Run)
	var h telemetry.Health
	pgtest.WaitFor(t, "the relay to report failing publishes", 60*time.Second, func() bool {
		h = relay.Check(ctx)
		return h.State == telemetry.Failing && strings.Contains(h.Reason, "broker unreachable")
	})
	if h.Since.IsZero() || time.Since(h.Since) > time.Minute {
		t.Errorf("failing since %v", h.Since)
	}
	relayAttrs := []attribute.KeyValue{attribute.String(telemetry.AttrRelay, "relay"), attribute.String(telemetry.AttrTopic, "order")}
	if n := sum(collect(t, reader), telemetry.MetricRelayErrors, relayAttrs...); n < 1 {
		t.Errorf("%s: %d, want at least 1", telemetry.MetricRelayErrors, n)
	}

	pub.failing.Store(false)
	pgtest.WaitFor(t, "the relay to be ready", 60*time.Second, func() bool { return relay.Check(ctx).State == telemetry.Ready })
	if n := sum(collect(t, reader), telemetry.MetricRelayPublished, relayAttrs...); n != 1 {
		t.Errorf("%s: %d, want 1", telemetry.MetricRelayPublished, n)
	}
	var sc metricdata.Metrics
	pgtest.WaitFor(t, "the relay's subscription metrics", 60*time.Second, func() bool {
		var ok bool
		sc, ok = collect(t, reader)[telemetry.MetricSubscriptionEvents]
		return ok && sum(map[string]metricdata.Metrics{"x": sc}, "x", attribute.String(telemetry.AttrSubscription, relay.SubscriptionName())) == 1
	})
}

// TestHealthEndpoint: a projection runner's and a relay's checks served by
// one HealthHandler: 200 and "ready" when both run and have caught up;
// 200 and "lagging" while the projection is more than HealthMaxLag events
// behind; 503 and "failing" with the handler's error once a projection
// under the Stop policy fails.
func TestHealthEndpoint(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	ctx := t.Context()

	release := make(chan struct{})
	var handled atomic.Int64
	slow := projection.HandlerFunc(func(ctx context.Context, _ pgx.Tx, e eventstore.Event) error {
		if e.Type == "Slow" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if e.Type == "Poison" {
			return errors.New("cannot apply poison")
		}
		handled.Add(1)
		return nil
	})
	runner := projection.NewRunner(store, []projection.Projection{
		{Name: "summary", Handler: slow, OnFailure: eventstore.Stop},
	}, &projection.Config{BatchSize: 1, HealthMaxLag: 1, MaxAttempts: 2, RetryBackoff: time.Millisecond, PollInterval: 50 * time.Millisecond})
	relay := outbox.NewRelay(store, gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}), &outbox.Config{PollInterval: 50 * time.Millisecond})
	checks := runner.HealthChecks()
	checks["outbox:relay"] = relay.Check
	srv := httptest.NewServer(telemetry.NewHealthHandler(checks, nil))
	t.Cleanup(srv.Close)

	get := func() (int, telemetry.HealthReport) {
		t.Helper()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep telemetry.HealthReport
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, rep
	}
	if code, rep := get(); code != 503 || rep.Checks["projection:summary"].State != telemetry.Failing || rep.Checks["outbox:relay"].State != telemetry.Failing {
		t.Fatalf("before Run: %d %+v", code, rep)
	}

	run(t, "runner", func(ctx context.Context) error {
		// Run returns once the poison event stopped its only projection.
		if err := runner.Run(ctx); err != nil && !strings.Contains(err.Error(), "cannot apply poison") {
			return err
		}
		return nil
	})
	run(t, "relay", relay.Run)
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, newEvent("OrderPlaced", `{}`)); err != nil {
		t.Fatal(err)
	}
	var code int
	var rep telemetry.HealthReport
	pgtest.WaitFor(t, "ready", 60*time.Second, func() bool {
		code, rep = get()
		return code == 200 && rep.State == telemetry.Ready && handled.Load() == 1
	})

	// Stuck on Slow with two more events behind it: lagging, still 200.
	if _, err := store.Append(ctx, "order-2", eventstore.NoStream, newEvent("Slow", `{}`), newEvent("OrderPlaced", `{}`), newEvent("OrderPlaced", `{}`)); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "lagging", 60*time.Second, func() bool {
		code, rep = get()
		return code == 200 && rep.State == telemetry.Lagging
	})
	if h := rep.Checks["projection:summary"]; h.State != telemetry.Lagging || !strings.Contains(h.Reason, "events behind") || h.Since.IsZero() {
		t.Errorf("lagging projection: %+v", h)
	}
	close(release)
	pgtest.WaitFor(t, "ready again", 60*time.Second, func() bool {
		code, rep = get()
		return code == 200 && rep.State == telemetry.Ready
	})

	// A poison event under the Stop policy: failing, 503, with the error.
	if _, err := store.Append(ctx, "order-3", eventstore.NoStream, newEvent("Poison", `{}`)); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "failing", 60*time.Second, func() bool {
		code, rep = get()
		return code == 503 && rep.State == telemetry.Failing
	})
	if h := rep.Checks["projection:summary"]; !strings.Contains(h.Reason, "cannot apply poison") {
		t.Errorf("failing projection: %+v", h)
	}
	if h := rep.Checks["outbox:relay"]; h.State != telemetry.Ready {
		t.Errorf("relay: %+v", h)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWorkersLogThroughStoreLogger: with only the store given a logger,
// the relay's and the projection runner's own records (not only their
// subscriptions') go to it, not to slog.Default().
func TestWorkersLogThroughStoreLogger(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	ctx := t.Context()

	pub := &flakyPublisher{Publisher: gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})}
	pub.failing.Store(true)
	relay := outbox.NewRelay(store, pub, &outbox.Config{PollInterval: 50 * time.Millisecond, RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond})
	runner := projection.NewRunner(store, []projection.Projection{{Name: "p", OnFailure: eventstore.Stop,
		Handler: projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return errors.New("poison") })}},
		&projection.Config{MaxAttempts: 1, PollInterval: 50 * time.Millisecond})
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, newEvent("OrderPlaced", `{}`)); err != nil {
		t.Fatal(err)
	}
	run(t, "relay", relay.Run)
	run(t, "runner", func(ctx context.Context) error { _ = runner.Run(ctx); return nil })
	pgtest.WaitFor(t, "the relay to fail", 60*time.Second, func() bool { return !relay.Health().Healthy })
	pub.failing.Store(false)
	pgtest.WaitFor(t, "both workers' records in the store's log", 60*time.Second, func() bool {
		s := buf.String()
		return strings.Contains(s, "relay publishing again") && strings.Contains(s, "relay=relay") && strings.Contains(s, "projection stopped")
	})
}

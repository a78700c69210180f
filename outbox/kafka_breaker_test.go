package outbox_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
	"github.com/strata-go/strata/outbox/kafka/kafkatest"
	"github.com/strata-go/strata/telemetry"
)

// TestKafkaRelayBreaker makes every Kafka broker unreachable for 3 s
// (connections cut and refused) while 1,000
// events of 50 streams are appended. The relay's circuit breaker, shared
// by its four partitions, opens after a run of failed publishes, half-opens
// to probe with one event, and closes once the brokers are back: Status
// shows "open" and "half-open", the transitions metric counts them,
// nothing is dead-lettered, and every event reaches the consumer group,
// each stream in order, with one effect each through Deduplicate.
func TestKafkaRelayBreaker(t *testing.T) {
	t.Parallel()
	c := kafkatest.Start(t, nil)
	ctx := t.Context()
	store, db := newStore(t)
	topic := uniqueTopic("breaker")
	createKafkaTopic(t, c, topic, nil)
	fx := newEffects(t, db)
	dedup, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "breaker-test", Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	r := newReceived()
	consume(ctx, t, newKafkaSubscriber(t, c.Addrs(), "breaker-test"), topic, r, dedup.Middleware(fx.handler))
	waitKafkaGroup(t, c, "breaker-test", 1)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	relay := outbox.NewRelay(store, newKafkaPublisher(t, c.Addrs()), &outbox.Config{
		Topic: func(eventstore.Event) string { return topic }, Permanent: kafka.Permanent, Partitions: 4,
		RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 300 * time.Millisecond, MeterProvider: mp,
	})
	runRelay(t, relay)

	seen := map[string]int{}
	var mu sync.Mutex
	watch, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watch.Err() == nil {
			if sts, err := store.SubscriptionStatuses(watch, relay.SubscriptionName()); err == nil {
				mu.Lock()
				for _, st := range sts {
					seen[st.State]++
				}
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	const streams, perStream = 50, 20
	appendRound(t, store, "brk", streams, 1, 2)
	r.waitFor(t, streams*2, 90*time.Second)
	c.SetUnreachable(true)
	stopped := time.Now()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for from := 3; from <= perStream; from += 2 {
			appendRound(t, store, "brk", streams, from, 2)
			time.Sleep(150 * time.Millisecond)
		}
	}()
	for time.Since(stopped) < 3*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	c.SetUnreachable(false)
	down := time.Since(stopped)
	<-writerDone
	r.waitFor(t, streams*perStream, 90*time.Second)
	stopWatch()
	<-watched
	r.check(t)
	if t.Failed() {
		r.mu.Lock()
		v := r.violations[0]
		r.mu.Unlock()
		dumpKafkaStream(t, c.Addrs(), topic, strings.TrimSuffix(strings.Fields(v)[1], ":"))
	}
	waitEffects(t, fx, streams*perStream, 30*time.Second)
	fx.check(t, streams*perStream)
	entered := relayBreakerTransitions(t, reader)
	t.Logf("brokers down for %v; Status states seen %v; transitions %v", down.Round(time.Millisecond), seen, entered)
	if seen[eventstore.BreakerOpen] == 0 || seen[eventstore.BreakerHalfOpen] == 0 {
		t.Errorf("Status never showed the breaker open and half-open: %v", seen)
	}
	if entered[eventstore.BreakerOpen] == 0 || entered[eventstore.BreakerHalfOpen] == 0 || entered[eventstore.BreakerClosed] == 0 {
		t.Errorf("the transitions metric did not count open, half-open and closed: %v", entered)
	}
	if dl, err := store.DeadLetters(ctx, relay.SubscriptionName()); err != nil || len(dl) != 0 {
		t.Errorf("dead letters: %v, %v; want none", dl, err)
	}
}

func relayBreakerTransitions(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == telemetry.MetricSubscriptionBreakerTransitions {
				for _, dp := range sum.DataPoints {
					v, _ := dp.Attributes.Value(telemetry.AttrBreakerState)
					out[v.AsString()] += dp.Value
				}
			}
		}
	}
	return out
}

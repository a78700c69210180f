// Package instrument makes the OpenTelemetry instruments through which
// Strata's packages record their metrics.
//
// Contract: New makes, from one meter provider, one instrument for each
// metric telemetry.Metrics documents, with that name, kind, unit and
// description, in Strata's instrumentation scope (telemetry.ScopeName);
// it never fails. Metric names and attribute keys live in package
// telemetry, which is public: this package is how the module records
// them, and is not.
package instrument

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-go/strata/telemetry"
)

// secondsBuckets are the histogram bucket bounds of every duration metric,
// in seconds: from half a millisecond (a local append) to ten seconds.
var secondsBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Set holds every Strata metric instrument, made from one meter.
type Set struct {
	// Meter is the meter the instruments came from, for registering
	// callbacks of the gauges.
	Meter metric.Meter

	// AppendDuration records telemetry.MetricAppendDuration.
	AppendDuration metric.Float64Histogram
	// AppendEvents records telemetry.MetricAppendEvents.
	AppendEvents metric.Int64Counter
	// SubscriptionEvents records telemetry.MetricSubscriptionEvents.
	SubscriptionEvents metric.Int64Counter
	// SubscriptionBatchDuration records telemetry.MetricSubscriptionBatchDuration.
	SubscriptionBatchDuration metric.Float64Histogram
	// SubscriptionLag observes telemetry.MetricSubscriptionLag.
	SubscriptionLag metric.Int64ObservableGauge
	// SubscriptionLagSeconds observes telemetry.MetricSubscriptionLagSeconds.
	SubscriptionLagSeconds metric.Float64ObservableGauge
	// HorizonAge observes telemetry.MetricHorizonAge.
	HorizonAge metric.Float64ObservableGauge
	// SubscriptionBreakerState observes
	// telemetry.MetricSubscriptionBreakerState.
	SubscriptionBreakerState metric.Int64ObservableGauge
	// SubscriptionBreakerTransitions records
	// telemetry.MetricSubscriptionBreakerTransitions.
	SubscriptionBreakerTransitions metric.Int64Counter
	// SubscriptionErrors records telemetry.MetricSubscriptionErrors.
	SubscriptionErrors metric.Int64Counter
	// SubscriptionDeadLetters records telemetry.MetricSubscriptionDeadLetters.
	SubscriptionDeadLetters metric.Int64Counter
	// RelayPublished records telemetry.MetricRelayPublished.
	RelayPublished metric.Int64Counter
	// RelayErrors records telemetry.MetricRelayErrors.
	RelayErrors metric.Int64Counter
	// ConsumeMessages records telemetry.MetricConsumeMessages.
	ConsumeMessages metric.Int64Counter
	// ConsumeDuration records telemetry.MetricConsumeDuration.
	ConsumeDuration metric.Float64Histogram
}

// New makes every Strata instrument from mp (the global provider when
// nil), with the names, units and descriptions of telemetry.Metrics.
// An instrument the provider fails to make is reported through
// otel.Handle and replaced by the provider's fallback, which records
// nothing; New never fails.
func New(mp metric.MeterProvider) *Set {
	m := telemetry.Meter(mp)
	in := &Set{Meter: m}
	spec := map[string]telemetry.Metric{}
	for _, d := range telemetry.Metrics() {
		spec[d.Name] = d
	}
	opts := func(name string) (string, metric.InstrumentOption, metric.InstrumentOption) {
		d := spec[name]
		return name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description)
	}
	check := func(err error) {
		if err != nil {
			otel.Handle(err)
		}
	}
	counter := func(name string) metric.Int64Counter {
		n, u, d := opts(name)
		c, err := m.Int64Counter(n, u, d)
		check(err)
		return c
	}
	histogram := func(name string) metric.Float64Histogram {
		n, u, d := opts(name)
		h, err := m.Float64Histogram(n, u, d, metric.WithExplicitBucketBoundaries(secondsBuckets...))
		check(err)
		return h
	}
	var err error
	in.AppendDuration = histogram(telemetry.MetricAppendDuration)
	in.AppendEvents = counter(telemetry.MetricAppendEvents)
	in.SubscriptionEvents = counter(telemetry.MetricSubscriptionEvents)
	in.SubscriptionBatchDuration = histogram(telemetry.MetricSubscriptionBatchDuration)
	n, u, d := opts(telemetry.MetricSubscriptionLag)
	in.SubscriptionLag, err = m.Int64ObservableGauge(n, u, d)
	check(err)
	n, u, d = opts(telemetry.MetricSubscriptionLagSeconds)
	in.SubscriptionLagSeconds, err = m.Float64ObservableGauge(n, u, d)
	check(err)
	n, u, d = opts(telemetry.MetricHorizonAge)
	in.HorizonAge, err = m.Float64ObservableGauge(n, u, d)
	check(err)
	n, u, d = opts(telemetry.MetricSubscriptionBreakerState)
	in.SubscriptionBreakerState, err = m.Int64ObservableGauge(n, u, d)
	check(err)
	in.SubscriptionBreakerTransitions = counter(telemetry.MetricSubscriptionBreakerTransitions)
	in.SubscriptionErrors = counter(telemetry.MetricSubscriptionErrors)
	in.SubscriptionDeadLetters = counter(telemetry.MetricSubscriptionDeadLetters)
	in.RelayPublished = counter(telemetry.MetricRelayPublished)
	in.RelayErrors = counter(telemetry.MetricRelayErrors)
	in.ConsumeMessages = counter(telemetry.MetricConsumeMessages)
	in.ConsumeDuration = histogram(telemetry.MetricConsumeDuration)
	return in
}

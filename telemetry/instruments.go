package telemetry

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// secondsBuckets are the histogram bucket bounds of every duration metric,
// in seconds: from half a millisecond (a local append) to ten seconds.
var secondsBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Meter returns Strata's meter from mp, or from the global
// otel.GetMeterProvider() when mp is nil.
func Meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(ScopeName)
}

// Tracer returns Strata's tracer from tp, or from the global
// otel.GetTracerProvider() when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

// Instruments holds every Strata metric instrument, made from one meter.
// Strata's packages make one with NewInstruments from their Config's
// MeterProvider; it is exported for code that records Strata's metrics
// itself (an adapter of another broker, say).
type Instruments struct {
	// Meter is the meter the instruments came from, for registering
	// callbacks of the gauges.
	Meter metric.Meter

	// AppendDuration records MetricAppendDuration.
	AppendDuration metric.Float64Histogram
	// AppendEvents records MetricAppendEvents.
	AppendEvents metric.Int64Counter
	// SubscriptionEvents records MetricSubscriptionEvents.
	SubscriptionEvents metric.Int64Counter
	// SubscriptionBatchDuration records MetricSubscriptionBatchDuration.
	SubscriptionBatchDuration metric.Float64Histogram
	// SubscriptionLag observes MetricSubscriptionLag.
	SubscriptionLag metric.Int64ObservableGauge
	// SubscriptionLagSeconds observes MetricSubscriptionLagSeconds.
	SubscriptionLagSeconds metric.Float64ObservableGauge
	// HorizonAge observes MetricHorizonAge.
	HorizonAge metric.Float64ObservableGauge
	// SubscriptionErrors records MetricSubscriptionErrors.
	SubscriptionErrors metric.Int64Counter
	// SubscriptionDeadLetters records MetricSubscriptionDeadLetters.
	SubscriptionDeadLetters metric.Int64Counter
	// RelayPublished records MetricRelayPublished.
	RelayPublished metric.Int64Counter
	// RelayErrors records MetricRelayErrors.
	RelayErrors metric.Int64Counter
	// ConsumeMessages records MetricConsumeMessages.
	ConsumeMessages metric.Int64Counter
	// ConsumeDuration records MetricConsumeDuration.
	ConsumeDuration metric.Float64Histogram
}

// NewInstruments makes every Strata instrument from mp (the global
// provider when nil), with the names, units and descriptions of Metrics.
// An instrument the provider fails to make is reported through
// otel.Handle and replaced by the provider's fallback, which records
// nothing; NewInstruments never fails.
func NewInstruments(mp metric.MeterProvider) *Instruments {
	m := Meter(mp)
	in := &Instruments{Meter: m}
	spec := map[string]Metric{}
	for _, d := range Metrics() {
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
	in.AppendDuration = histogram(MetricAppendDuration)
	in.AppendEvents = counter(MetricAppendEvents)
	in.SubscriptionEvents = counter(MetricSubscriptionEvents)
	in.SubscriptionBatchDuration = histogram(MetricSubscriptionBatchDuration)
	n, u, d := opts(MetricSubscriptionLag)
	in.SubscriptionLag, err = m.Int64ObservableGauge(n, u, d)
	check(err)
	n, u, d = opts(MetricSubscriptionLagSeconds)
	in.SubscriptionLagSeconds, err = m.Float64ObservableGauge(n, u, d)
	check(err)
	n, u, d = opts(MetricHorizonAge)
	in.HorizonAge, err = m.Float64ObservableGauge(n, u, d)
	check(err)
	in.SubscriptionErrors = counter(MetricSubscriptionErrors)
	in.SubscriptionDeadLetters = counter(MetricSubscriptionDeadLetters)
	in.RelayPublished = counter(MetricRelayPublished)
	in.RelayErrors = counter(MetricRelayErrors)
	in.ConsumeMessages = counter(MetricConsumeMessages)
	in.ConsumeDuration = histogram(MetricConsumeDuration)
	return in
}

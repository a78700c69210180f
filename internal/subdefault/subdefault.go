// Package subdefault holds the defaults of eventstore.SubscriptionConfig,
// for the packages that run subscriptions and need a value before the
// subscription applies its own: the bounds of a restart loop around
// Subscription.Run, the batch size a rebuild compares batches with.
//
// Contract: each constant equals the default eventstore.Store.Subscription
// gives the field of the same name (a test in package eventstore checks
// it). A package whose config leaves a field zero passes zero to the
// subscription, which then applies this default; a package that defaults
// a field to another value documents why beside that field.
package subdefault

import "time"

const (
	// Partitions is SubscriptionConfig.Partitions' default.
	Partitions = 1
	// BatchSize is SubscriptionConfig.BatchSize's default.
	BatchSize = 500
	// MaxAttempts is SubscriptionConfig.MaxAttempts' default.
	MaxAttempts = 5
	// RetryBackoff is SubscriptionConfig.RetryBackoff's default.
	RetryBackoff = 100 * time.Millisecond
	// MaxRetryBackoff is SubscriptionConfig.MaxRetryBackoff's default.
	MaxRetryBackoff = 30 * time.Second
	// LeaseTTL is SubscriptionConfig.LeaseTTL's default.
	LeaseTTL = 5 * time.Second
	// PollInterval is SubscriptionConfig.PollInterval's default.
	PollInterval = time.Second
)

// Or sets *v to def when it is zero or negative: how every config of the
// module reads a numeric field left unset.
func Or[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

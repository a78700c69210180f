package eventstore

import (
	"testing"

	"github.com/strata-go/strata/internal/subdefault"
)

// The defaults that sibling packages read from internal/subdefault are the
// ones Subscription applies.
func TestSubscriptionDefaultsMatchSubdefault(t *testing.T) {
	sub, err := New(nil, nil).Subscription(SubscriptionConfig{Name: "defaults"})
	if err != nil {
		t.Fatal(err)
	}
	c := sub.cfg
	if c.Partitions != subdefault.Partitions || c.BatchSize != subdefault.BatchSize || c.MaxAttempts != subdefault.MaxAttempts ||
		c.RetryBackoff != subdefault.RetryBackoff || c.MaxRetryBackoff != subdefault.MaxRetryBackoff ||
		c.LeaseTTL != subdefault.LeaseTTL || c.PollInterval != subdefault.PollInterval {
		t.Fatalf("Subscription's defaults %+v differ from internal/subdefault", c)
	}
}

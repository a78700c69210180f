package outbox_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/strata-go/strata/internal/pgtest"
)

// TestMain fails the package's run when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	// Sarama's metrics (rcrowley/go-metrics) start one ticker goroutine per
	// process, by design, at the first Kafka client.
	goleak.VerifyTestMain(m, append(pgtest.LeakOptions(), goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))...)
}

package outbox_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/strata-go/strata/internal/pgtest"
)

// TestMain fails the package's run when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, pgtest.LeakOptions()...)
}

package shred_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/strata-go/strata/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, pgtest.LeakOptions()...)
}

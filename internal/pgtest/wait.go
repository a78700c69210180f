package pgtest

import (
	"testing"
	"time"
)

// WaitFor polls cond every 10ms until it holds, and fails tb when d
// passes first, naming what it waited for. Tests of readers use it: a
// gap-safe reader may be delayed by any transaction open on the server,
// so they poll until a deadline instead of asserting after one read.
func WaitFor(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

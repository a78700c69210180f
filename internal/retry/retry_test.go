package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDoublesWithinJitterUpToMax(t *testing.T) {
	b := Backoff(100*time.Millisecond, time.Second)
	nominal := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, n := range nominal {
			n *= time.Millisecond
			d := b.NextBackOff()
			lo, hi := time.Duration(float64(n)*(1-Spread)), time.Duration(float64(n)*(1+Spread))+1
			if d < lo || d > hi {
				t.Fatalf("round %d, wait %d: %s, want within [%s, %s]", round, i, d, lo, hi)
			}
		}
		b.Reset()
	}
}

func TestSleepEndsWithCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on a done ctx reported a full wait")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep did not report its full wait")
	}
}

func TestJitterStaysWithinSpread(t *testing.T) {
	for range 1000 {
		if d := Jitter(time.Second); d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("Jitter(1s) = %s", d)
		}
	}
}

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

// Full's waits stay within [0, bound], the bound doubling from initial to
// max, and spread over that range.
func TestFullStaysWithinBoundsAndSpreads(t *testing.T) {
	const initial, limit = time.Millisecond, 100 * time.Millisecond
	var low bool
	for range 200 {
		b := Full(initial, limit)
		bound := initial
		for range 12 {
			d := b.NextBackOff()
			if d < 0 || d > bound+1 {
				t.Fatalf("wait %v outside [0, %v]", d, bound)
			}
			if d < bound/4 {
				low = true
			}
			bound = min(2*bound, limit)
		}
	}
	if !low {
		t.Fatal("no wait below a quarter of its bound: not full jitter")
	}
	if d := Full(0, 0).NextBackOff(); d < 0 || d > 3 {
		t.Fatalf("Full(0, 0) waits %v", d)
	}
}

// Package retry holds the waits between attempts: one backoff policy and
// one interruptible sleep, shared by the packages that retry.
//
// Contract:
//
//   - Backoff(initial, max) waits initial before the second attempt and
//     doubles the wait with each further one up to max, each wait drawn
//     within ±20% of its nominal value (jitter, so that processes that
//     failed together do not retry in lockstep). Reset starts over at
//     initial. It is github.com/cenkalti/backoff/v5's ExponentialBackOff,
//     not safe for concurrent use.
//   - Full(initial, max) is Backoff with full jitter: each wait is drawn
//     uniformly between zero and a bound that starts at initial and
//     doubles up to max (for retries where many callers contend for one
//     thing, such as a stream's version, and the spread matters more than
//     the mean).
//   - Jitter moves a single wait within the same ±20%.
//   - Sleep waits d or until ctx ends, and reports whether it waited the
//     whole d.
package retry

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Spread is the randomization factor of every wait: ±20%.
const Spread = 0.2

// Jitter returns d moved at random within ±Spread of itself.
func Jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*2-1)*Spread*float64(d))
}

// Backoff returns the exponential backoff from initial to max, with jitter.
func Backoff(initial, max time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: Spread,
		Multiplier:          2,
		MaxInterval:         max,
	}
	b.Reset()
	return b
}

// Full returns the backoff with full jitter from initial to limit. A
// randomization factor of 1 spreads each wait over [0, 2×nominal]: half
// the bounds give waits up to the bounds. An initial below two
// nanoseconds is taken as two (half of it must not be zero, which would
// stay zero), a limit below initial as initial.
func Full(initial, limit time.Duration) *backoff.ExponentialBackOff {
	initial = max(initial, 2)
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial / 2,
		RandomizationFactor: 1,
		Multiplier:          2,
		MaxInterval:         max(limit, initial) / 2,
	}
	b.Reset()
	return b
}

// Sleep waits d, or until ctx is done; it reports whether it waited d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

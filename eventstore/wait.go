package eventstore

import (
	"context"
	"time"

	"github.com/strata-go/strata/internal/retry"
)

// sleep waits d, or until ctx is done; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool { return retry.Sleep(ctx, d) }

// jitter returns d moved at random within ±20% of itself.
func jitter(d time.Duration) time.Duration { return retry.Jitter(d) }

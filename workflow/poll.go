package workflow

import (
	"context"
	"time"

	"github.com/strata-go/strata/internal/retry"
)

// busyWait is how soon a worker looks again after passing over an
// instance another transaction held.
const busyWait = 5 * time.Millisecond

// poll is the loop of the reaction workers and of the deadline worker:
// it runs step (React or FireDue) until ctx ends. After a failure it waits
// with backoff (what names the work in the warning). After a pass it
// sleeps until the earliest of: the time the query next returns (the next
// deadline due, the next input's retry, for this workflow), a wake-up
// (NOTIFY), the poll interval, or busyWait when step passed over a busy
// instance; when that time has come already it goes again at once if step
// did something, and otherwise waits the poll interval (busyWait when
// busy) rather than spin on work held behind a parked input.
func (r *Runner[S]) poll(ctx context.Context, wake <-chan struct{}, what string, step func(context.Context) (int, bool, error), next string) {
	interval := r.cfg.PollInterval
	if interval <= 0 {
		interval = defaultDeadlinePoll
	}
	failWait := retry.Backoff(r.cfg.RetryBackoff, interval)
	for ctx.Err() == nil {
		done, busy, err := step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := failWait.NextBackOff()
			r.log.Warn("strata: "+what+" failed; retrying", "err", err, "retry_in", d)
			if !retry.Sleep(ctx, d) {
				return
			}
			continue
		}
		failWait.Reset()
		wait := interval
		var due *time.Time
		if err := r.store.Pool().QueryRow(ctx, next, r.wf.Name).Scan(&due); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("strata: "+what+": reading the next due time failed", "err", err)
		} else if due != nil {
			wait = min(wait, due.Sub(r.cfg.Clock.Now()))
		}
		if busy {
			wait = min(wait, busyWait)
		}
		if wait <= 0 {
			if done > 0 {
				continue
			}
			wait = interval
			if busy {
				wait = busyWait
			}
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-r.cfg.Clock.After(wait):
		case <-time.After(interval):
		}
	}
}

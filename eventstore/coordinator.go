package eventstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/strata-go/strata/internal/retry"
)

// coordinator is one Run of a subscription in this process: every
// LeaseTTL/3 it renews the process's leases and claims its fair share of
// the partitions (lease.go), runs one worker per partition it owns
// (worker.go), stops the workers of partitions it lost or gives back, and
// ends Run when a worker fails under the Stop policy or, with
// StopWhenCaughtUp, when every partition has caught up, or, with StopAt,
// when every partition, this process's or another's, has reached it
// (stopat.go).
//
// Only the goroutine running run touches workers and caughtUp; workers
// report through the exited and reached channels.
type coordinator struct {
	sub    *Subscription
	h      Handler
	cancel context.CancelCauseFunc // ends Run; the cause is Run's error
	wg     sync.WaitGroup          // the workers

	workers  map[int]*running // by partition
	caughtUp map[int]bool     // partitions that have reached the end of the log once
	exited   chan struct{}    // a worker ended: look for closed done channels
	reached  chan int         // a worker reached the end of the log
	// maintain is sub.maintain (lease.go); tests wrap it to make it fail.
	maintain func(ctx context.Context, running int) (claimed map[int]checkpoint, owned map[int]bool, surplus []int, err error)
	// balanced is sub.balanced (lease.go).
	balanced func(ctx context.Context, workers int) (bool, error)
}

// running is a partition's worker.
type running struct {
	stop context.CancelFunc
	done chan struct{} // closed when the worker has returned
}

func newCoordinator(sub *Subscription, h Handler, cancel context.CancelCauseFunc) *coordinator {
	return &coordinator{
		sub:      sub,
		h:        h,
		cancel:   cancel,
		workers:  map[int]*running{},
		caughtUp: map[int]bool{},
		exited:   make(chan struct{}, 1),
		reached:  make(chan int, sub.cfg.Partitions),
		maintain: sub.maintain,
		balanced: sub.balanced,
	}
}

// run coordinates until ctx ends or the subscription is done.
func (c *coordinator) run(ctx context.Context) error {
	tick := time.NewTicker(c.sub.cfg.LeaseTTL / 3)
	defer tick.Stop()
	// Between renewals, a cheap look at the members and free partitions
	// (balanced) rebalances as soon as a process joins, leaves or lets a
	// lease expire.
	look := time.NewTicker(c.sub.cfg.LeaseTTL / balanceLooks)
	defer look.Stop()
	// With StopAt: look at other processes' partitions often (a cheap
	// read of the checkpoints, each lag counted up to one event), so that
	// Run ends soon after they reach it.
	var others <-chan time.Time
	if !c.sub.cfg.StopAt.IsZero() {
		t := time.NewTicker(min(c.sub.cfg.PollInterval, stopCheckInterval))
		defer t.Stop()
		others = t.C
	}
	// A failed lease maintenance is tried again sooner than the next
	// tick: from RetryBackoff, doubling up to the tick, with jitter.
	wait := retry.Backoff(min(c.sub.cfg.RetryBackoff, c.sub.cfg.LeaseTTL/3), c.sub.cfg.LeaseTTL/3)
	var again <-chan time.Time
	renew := true
	for {
		if renew {
			if c.rebalance(ctx) {
				wait.Reset()
				again = nil
			} else {
				again = time.After(wait.NextBackOff())
			}
		}
		renew = true
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case <-c.exited:
			for p, w := range c.workers {
				select {
				case <-w.done:
					delete(c.workers, p)
				default:
				}
			}
		case p := <-c.reached:
			c.caughtUp[p] = true
		case <-tick.C:
		case <-look.C:
			ok, err := c.balanced(ctx, len(c.workers))
			renew = err == nil && !ok
		case <-again:
		case <-others:
			renew = false // the leases wait for their own tick
			if len(c.caughtUp) < c.sub.cfg.Partitions {
				c.othersAtStop(ctx, c.caughtUp)
			}
		}
		if (c.sub.cfg.StopWhenCaughtUp || !c.sub.cfg.StopAt.IsZero()) && len(c.caughtUp) == c.sub.cfg.Partitions {
			return nil
		}
	}
}

// balanceLooks is how many times per LeaseTTL the coordinator looks
// whether it holds its fair share (250ms with the default 5s TTL).
const balanceLooks = 20

// stop ends every worker, waits for them, and gives back this process's
// leases and membership.
func (c *coordinator) stop(ctx context.Context) {
	c.cancel(nil)
	c.wg.Wait()
	c.sub.leave(ctx)
}

// rebalance renews the leases and matches the workers to them: it stops
// the workers of partitions no longer owned, hands surplus partitions
// over, and starts workers for partitions claimed (or owned without one).
// It reports whether the leases could be maintained.
func (c *coordinator) rebalance(ctx context.Context) bool {
	sub := c.sub
	claimed, owned, surplus, err := c.maintain(ctx, len(c.workers))
	if err != nil {
		if ctx.Err() == nil {
			sub.log.Warn("strata: lease maintenance failed", "err", err)
		}
		return false
	}
	for p, w := range c.workers {
		if !owned[p] && !slices.Contains(surplus, p) {
			sub.log.Warn("strata: lost the lease of a partition", "partition", p)
			w.stop()
		}
	}
	// Hand surplus partitions over only once their workers have stopped,
	// so that no batch is in flight when another process takes them.
	for _, p := range surplus {
		if w, ok := c.workers[p]; ok {
			w.stop()
			<-w.done
			delete(c.workers, p)
		}
		if err := sub.release(ctx, p); err != nil && ctx.Err() == nil {
			sub.log.Warn("strata: could not hand over a partition", "partition", p, "err", err)
		}
	}
	for p, cp := range claimed {
		if _, ok := c.workers[p]; !ok {
			c.start(ctx, p, cp)
		}
	}
	return true
}

// start runs a worker for partition p from checkpoint cp.
func (c *coordinator) start(ctx context.Context, p int, cp checkpoint) {
	wctx, stop := context.WithCancel(ctx)
	r := &running{stop: stop, done: make(chan struct{})}
	c.workers[p] = r
	wake, release := c.sub.store.wakeups(ctx)
	w := newWorker(c.sub, p, cp)
	c.wg.Go(func() {
		defer func() {
			stop()
			release()
			close(r.done)
			select {
			case c.exited <- struct{}{}:
			default:
			}
		}()
		err := w.run(wctx, c.h, wake, c.reached)
		var he *HandlerError
		if errors.As(err, &he) {
			c.cancel(err)
		}
	})
}

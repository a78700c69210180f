package workflow

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/retry"
)

// listenAll starts the listener (in wg, until ctx ends) and returns one
// wake-up channel per reaction worker, then the deadline worker's.
func (r *Runner[S]) listenAll(ctx context.Context, wg *sync.WaitGroup) []chan struct{} {
	wake := make([]chan struct{}, r.cfg.Workers+1)
	for i := range wake {
		wake[i] = make(chan struct{}, 1)
	}
	wg.Go(func() {
		r.listen(ctx, func() {
			for _, ch := range wake {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		})
	})
	return wake
}

// listen holds a connection of its own that LISTENs on the schema's
// workflow channel, and calls signal for every
// notification naming this workflow, until ctx ends. The router notifies
// at the commit of the inputs it queued, reactions at the commit of the
// deadlines they scheduled, so the workers see both at once. After a lost connection
// it connects again with backoff and signals wake once, since
// notifications may have been missed meanwhile; the worker's poll covers
// the time without a connection.
func (r *Runner[S]) listen(ctx context.Context, signal func()) {
	wait := retry.Backoff(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, signal)
		if ctx.Err() != nil {
			return
		}
		d := wait.NextBackOff()
		r.log.Warn("strata: workflow deadline listener lost its connection; reconnecting", "err", err, "retry_in", d)
		if !retry.Sleep(ctx, d) {
			return
		}
		signal()
	}
}

func (r *Runner[S]) listenOnce(ctx context.Context, signal func()) error {
	conn, err := pgx.ConnectConfig(ctx, r.store.Pool().Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{r.ch}.Sanitize()); err != nil {
		return err
	}
	signal() // anything scheduled before LISTEN took effect
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload == r.wf.Name {
			signal()
		}
	}
}

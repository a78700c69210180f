package workflow

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/retry"
)

// listen holds a connection of its own that LISTENs on the schema's
// workflow channel, and signals wake (without blocking) for every
// notification naming this workflow, until ctx ends. Reactions that
// schedule a deadline notify at their commit, so a deadline due sooner
// than the worker's next wake-up is seen at once. After a lost connection
// it connects again with backoff and signals wake once, since
// notifications may have been missed meanwhile; the worker's poll covers
// the time without a connection.
func (r *Runner[S]) listen(ctx context.Context, wake chan<- struct{}) {
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
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

package shred_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// A dead letter retried is handed to the handler opened, as the batch
// was: not as stored (sealed), which would write ciphertext into the read
// model or fail its decoding.
func TestDeadLetterRetryOpens(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sg := newSignups(t, f)
	var down atomic.Bool
	down.Store(true)
	p := sg.projection(f)
	inner := p.Handler
	p.MaxAttempts = 1
	p.Handler = projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		if down.Load() {
			return errors.New("downstream down")
		}
		return inner.(projection.HandlerFunc)(ctx, tx, e)
	})
	runner := projection.NewRunner(f.store, []projection.Projection{p}, &projection.Config{PollInterval: 20 * time.Millisecond})
	f.append(t, "account-ada", Signup{Customer: "c-ada", Email: "ada@example.com", Plan: "pro"})
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	pgtest.WaitFor(t, "the dead letter", time.Minute, func() bool {
		dl, err := runner.DeadLetters(ctx, "signups")
		return err == nil && len(dl) == 1
	})
	down.Store(false)
	if _, err := runner.RetryDeadLetters(ctx, "signups", ""); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "the retried row", time.Minute, func() bool { return len(sg.rows(t, f)) == 1 })
	cancel()
	<-done
	if rows := sg.rows(t, f); rows["c-ada"] != "ada@example.com" {
		t.Fatalf("read model after the retry: %v", rows)
	}
}

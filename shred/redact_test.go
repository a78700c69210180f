package shred_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
)

// A handler's error that quotes what it was handed is recorded (the
// subscription's last error, a dead letter) without the personal values
// it was opened with: such a text is written after the batch's
// transaction ended, so its key lock cannot order it before a forget, and
// the subscription's last error is no stream's to scrub.
func TestHandlerErrorTextRedacted(t *testing.T) {
	t.Parallel()
	for _, policy := range []eventstore.FailurePolicy{eventstore.Park, eventstore.Stop} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			failing := projection.Projection{
				Name:        "mailer",
				MaxAttempts: 2,
				OnFailure:   policy,
				Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
					v, err := schema.DecodeAs[Signup](f.reg, e)
					if err != nil {
						return err
					}
					return fmt.Errorf("cannot mail %q at %s (age %d): %w", v.Email, v.Address.Street, v.Age, errors.ErrUnsupported)
				}),
			}
			runner := projection.NewRunner(f.store, []projection.Projection{failing}, nil)
			f.append(t, "account-ada", Signup{Customer: "c-ada", Email: "ada@example.com", Age: 36,
				Address: &Address{Street: "12 Rue Lovelace", City: "Paris"}, Plan: "pro"})
			runDone := make(chan error, 1)
			go func() { runDone <- runner.Run(ctx) }()
			var lastErr string
			pgtest.WaitFor(t, "the handler's error recorded", time.Minute, func() bool {
				var dead int
				err := f.db.Pool.QueryRow(ctx, `SELECT coalesce(max(s.last_error), ''), (SELECT count(*) FROM `+f.db.Schema+`.dead_letters)
					FROM `+f.db.Schema+`.subscriptions s`).Scan(&lastErr, &dead)
				return err == nil && (dead == 1 || policy == eventstore.Stop && strings.Contains(lastErr, "handler failed"))
			})
			cancel()
			<-runDone
			secrets := []string{"ada@example.com", "12 Rue Lovelace"}
			if hits := scanSchema(t, f.db.Pool, f.db.Schema, secrets); len(hits) > 0 {
				t.Fatalf("personal values in error texts (last error %q):\n%s", lastErr, strings.Join(hits, "\n"))
			}
			if policy == eventstore.Stop && !strings.Contains(lastErr, "cannot mail") {
				t.Fatalf("last error %q: the rest of the text should stay", lastErr)
			}
		})
	}
}

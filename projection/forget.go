package projection

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// KeyForgetter deletes a data subject's key in a transaction: a
// *shred.Shredder is one.
type KeyForgetter interface {
	ForgetTx(ctx context.Context, tx pgx.Tx, subject string) error
}

// Forget forgets a data subject everywhere the Runner's projections keep
// it, in one transaction: keys.ForgetTx first (the subject's key row is
// locked, so batches that are opening the subject's fields finish before
// it goes on, and every later batch reads them erased), then each
// projection's Forget, which therefore sees every row such a batch wrote.
// Projections without a Forget keep what they wrote until a Rebuild.
func (r *Runner) Forget(ctx context.Context, keys KeyForgetter, subject string) error {
	if r.err != nil {
		return r.err
	}
	err := pgx.BeginFunc(ctx, r.store.Pool(), func(tx pgx.Tx) error {
		if err := keys.ForgetTx(ctx, tx, subject); err != nil {
			return err
		}
		for _, e := range r.entries {
			if e.p.Forget == nil {
				continue
			}
			if err := e.p.Forget(withVersion(ctx, e), tx, subject); err != nil {
				return fmt.Errorf("projection %q: forget: %w", e.p.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("projection: forget %q: %w", subject, err)
	}
	return nil
}

package projection_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// TestRunRefusedLogin runs projections on a pool whose login the server
// refuses (a role that does not exist: SQLSTATE 28000, the class of a
// wrong password or certificate). Run returns an error matching
// eventstore.ErrAuth at once instead of restarting the projections with
// backoff for as long as its context lasts.
func TestRunRefusedLogin(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg := pgtest.Config(t)
	cfg.ConnConfig.User = "strata_no_such_role"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })
	runner := projection.NewRunner(store, []projection.Projection{{Name: "p1", Handler: h}, {Name: "p2", Handler: h}}, nil)
	start := time.Now()
	err = runner.Run(ctx)
	if !errors.Is(err, eventstore.ErrAuth) || time.Since(start) > 10*time.Second {
		t.Fatalf("Run: %v after %s; want eventstore.ErrAuth at once", err, time.Since(start))
	}
}

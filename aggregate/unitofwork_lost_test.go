package aggregate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
)

// TestUnitOfWorkLostCommit cuts the connection as COMMIT goes out, the
// server committing or not (at random): Run returns nil exactly when the
// transfer's events are stored (it resolves the outcome on another
// connection), and an error exactly when they are not.
func TestUnitOfWorkLostCommit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cc := cfg.ConnConfig
	cc.Host, cc.Port, cc.TLSConfig, cc.Fallbacks = p.Host(), p.Port(), nil, nil
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p.SetDropCancels(true)
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema, NotifyInterval: -1})
	repo, _ := accountRepo(t, store)
	openAccounts(t, ctx, repo)
	direct, _ := accountRepo(t, eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, NotifyInterval: -1}))
	uow := aggregate.NewUnitOfWork(store, nil)
	stored, failed := 0, 0
	for i := range 12 {
		from, to := fmt.Sprint(i%xferAccounts), fmt.Sprint((i+1)%xferAccounts)
		before, err := direct.Load(ctx, from)
		must(t, err)
		err = uow.Run(ctx, func(ctx context.Context, s *aggregate.Session) error {
			a, err := aggregate.Get(ctx, s, repo, from)
			if err != nil {
				return err
			}
			b, err := aggregate.Get(ctx, s, repo, to)
			if err != nil {
				return err
			}
			// Loaded through the proxy: cut the COMMIT (a simple query;
			// the loads and appends use the extended protocol).
			p.SetCut(&faultproxy.Cut{Types: "Q", Random: true, Times: 1})
			return transfer(a, b, 1)
		})
		after, lerr := direct.Load(ctx, from)
		must(t, lerr)
		moved := after.Version() == before.Version()+1
		switch {
		case err == nil && !moved:
			t.Fatalf("transfer %d: Run returned nil, but the events are not stored", i)
		case err != nil && moved:
			t.Fatalf("transfer %d: Run returned %v, but the events are stored", i, err)
		case err == nil:
			stored++
		default:
			failed++
		}
	}
	if p.Cuts() == 0 {
		t.Fatal("no COMMIT was cut")
	}
	if got := total(t, ctx, direct); got != xferAccounts*xferOpening {
		t.Fatalf("total %d", got)
	}
	t.Logf("%d cuts: %d transfers stored, %d refused with an error", p.Cuts(), stored, failed)
}

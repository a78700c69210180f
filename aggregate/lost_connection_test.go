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

// TestUpdateLostAfterCommit: Save and Update leave the ID of each event to
// the store, so a connection lost after the server committed must not
// turn into an error (a caller retrying the command would store its
// events twice): the store resolves it, and Update returns nil once, with
// every increment stored exactly once.
func TestUpdateLostAfterCommit(t *testing.T) {
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	repo := aggregate.NewRepository(store, newRegistry(t), newCounter, nil)
	p.SetDropCancels(true) // a partition would stop pgx's cancel request too

	for i := range 5 {
		err := repo.Update(ctx, "lost", func(c *Counter) error {
			c.Raise(Incremented{By: 1})
			// Loaded through the proxy: cut the save that follows.
			p.SetCut(&faultproxy.Cut{Types: "E", Upstream: faultproxy.UpstreamAfterReply, Times: 1})
			return nil
		})
		if err != nil {
			t.Fatalf("update %d: %v (the server committed before the connection was lost)", i, err)
		}
	}
	c, err := aggregate.NewRepository(eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema}), newRegistry(t), newCounter, nil).Load(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if c.Count != 5 || c.Version() != 5 || p.Cuts() != 5 {
		t.Fatalf("count %d at version %d after 5 updates and %d cuts; want 5, 5, 5", c.Count, c.Version(), p.Cuts())
	}
}

package pubsub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// TestSubscribeRefusedLogin subscribes through a pool whose login the
// server refuses (a role that does not exist: SQLSTATE 28000, the class
// of a wrong password or certificate): Subscribe returns an error
// matching eventstore.ErrAuth instead of a channel that never delivers.
func TestSubscribeRefusedLogin(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg := pgtest.Config(t)
	cfg.ConnConfig.User = "strata_no_such_role"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sub, err := pubsub.NewSubscriber(eventstore.New(pool, &eventstore.Config{Schema: db.Schema}), &pubsub.SubscriberConfig{ConsumerGroup: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "orders")
	if !errors.Is(err, eventstore.ErrAuth) || ch != nil {
		t.Fatalf("Subscribe: %v; want eventstore.ErrAuth", err)
	}
}

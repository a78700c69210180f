package pubsub_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// A database failure after the consumer acked (the checkpoint cannot be
// stored) delivers the message again once the database answers, as often
// as it takes: it never counts toward the subscription's MaxAttempts, so
// an outage parks nothing and the topic goes on.
func TestDatabaseErrorsParkNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg := pgtest.Config(t)
	app := "sub_" + db.Schema
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	// The pool hands out its most recently used idle connection first, as
	// it is, without a ping (a ping would replace the terminated one); no
	// health check reorders them meanwhile.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	cfg.HealthCheckPeriod = time.Hour
	// One connection (the LISTEN connection is not the pool's): the one
	// terminated below is the one the checkpoint's update takes. With more,
	// "the most recently used" seen by the server (state_change) need not
	// be the one the pool hands out next, and the update may succeed on
	// another: no redelivery would come.
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	const group, topic = "g", "outage"
	// A long lease: no renewal takes connections from the pool meanwhile.
	pub, sub := newPubSub(t, s, &pubsub.SubscriberConfig{ConsumerGroup: group, LeaseTTL: 10 * time.Minute})
	if err := pub.Publish(topic, message.NewMessage("m1", []byte(`1`))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	name := pubsub.SubscriptionName(pubsub.DefaultPrefix, group, topic)
	// The test's own queries go through another pool, leaving the
	// subscriber's pool to the subscriber.
	admin := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	// next waits for the next message, failing as soon as one is parked.
	// The deadline is long: a gap-safe reader waits for every transaction
	// open on the server, other tests' included.
	next := func(what string) *message.Message {
		t.Helper()
		deadline := time.After(3 * time.Minute)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case msg, ok := <-ch:
				if !ok {
					t.Fatal("channel closed")
				}
				return msg
			case <-tick.C:
				dead, err := admin.DeadLetters(ctxT(t), name)
				if err != nil {
					t.Fatal(err)
				}
				if len(dead) > 0 {
					t.Fatalf("%s: parked after a database error: %+v", what, dead)
				}
			case <-deadline:
				t.Fatalf("%s: no message within 3m", what)
			}
		}
	}
	// More failures than the default MaxAttempts (5). Each time, the
	// connection the checkpoint's update takes next (the pool's only one)
	// is terminated while the consumer holds the
	// message: the update fails, and the message comes again.
	const failures = 7
	for i := range failures {
		msg := next("redelivery after a database error")
		if msg.UUID != "m1" {
			t.Fatalf("attempt %d: got %s, want m1", i, msg.UUID)
		}
		var pid int32
		pgtest.WaitFor(t, "the pool's connection to be idle", 30*time.Second, func() bool {
			return db.Pool.QueryRow(ctxT(t), `SELECT pid FROM pg_stat_activity
				WHERE application_name = $1 AND state = 'idle' AND query NOT ILIKE 'LISTEN%'`, app).Scan(&pid) == nil
		})
		var ok bool
		if err := db.Pool.QueryRow(ctxT(t), `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("terminate %d: %v %v", pid, ok, err)
		}
		pgtest.WaitFor(t, "the terminated backend to exit", 30*time.Second, func() bool {
			var n int
			err := db.Pool.QueryRow(ctxT(t), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n)
			return err == nil && n == 0
		})
		msg.Ack()
	}
	// The database answers again: the message is acked for good.
	msg := next("delivery after the outage")
	if msg.UUID != "m1" {
		t.Fatalf("got %s, want m1", msg.UUID)
	}
	msg.Ack()
	if err := pub.Publish(topic, message.NewMessage("m2", []byte(`2`))); err != nil {
		t.Fatal(err)
	}
	if msg := next("the next message"); msg.UUID != "m2" {
		t.Fatalf("got %s, want m2", msg.UUID)
	} else {
		msg.Ack()
	}
	dead, err := admin.DeadLetters(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 0 {
		t.Fatalf("%d messages parked after a database outage: %+v", len(dead), dead)
	}
}

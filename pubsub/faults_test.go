package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// TestPubSubUnderFaults: publishers and a consumer group whose store's
// pool goes through the fault proxy. Postgres statements are cut at random
// at the worst moment (after being sent; the server's side closed, closed
// after it answered, or held open); in the first half of the run every
// connection is cut at once, or the proxy blackholed for a moment, at
// random moments. Promises 4 and 7, read on the store itself: every
// Publish that returned nil is stored, once; one that returned an error is
// not stored, unless the error is eventstore.ErrAmbiguous; the consumer
// group delivers every stored message at least once, and none it acked is
// parked.
func TestPubSubUnderFaults(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg, p, err := faultproxy.PoolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// pgx sends a CancelRequest when it loses a connection; across a real
	// partition it would not arrive either.
	p.SetDropCancels(true)
	cfg.MaxConns = 10
	app := "strata-faults-" + db.Schema
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("STRATA_FAULT_LOG") == "1" {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema, Logger: quiet})
	pub, err := pubsub.NewPublisher(store, &pubsub.PublisherConfig{PartitionKey: func(_ string, msg *message.Message) string {
		return msg.Metadata.Get("key")
	}})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := pubsub.NewSubscriber(store, &pubsub.SubscriberConfig{ConsumerGroup: "faults", Partitions: 2, BatchSize: 20,
		NackResendSleep: 5 * time.Millisecond, PollInterval: 100 * time.Millisecond, LeaseTTL: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	topic := "faults-" + watermill.NewShortUUID()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var smu sync.Mutex
	seen := map[string]int{} // message UUID → deliveries
	var nacked atomic.Int64
	go func() {
		for msg := range ch {
			smu.Lock()
			seen[msg.UUID]++
			smu.Unlock()
			if rand.IntN(20) == 0 {
				nacked.Add(1)
				msg.Nack()
				continue
			}
			msg.Ack()
		}
	}()

	// Publishers: each call one or two new messages, its outcome recorded.
	type call struct {
		ids        []string
		err        error
		start, end time.Time
	}
	var cmu sync.Mutex
	var calls []call
	pctx, stopPublishers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; pctx.Err() == nil; i++ {
				// One to three messages, each to a random partition: a
				// call across streams is one transaction, all or nothing.
				msgs := make([]*message.Message, 1+rand.IntN(3))
				c := call{}
				for k := range msgs {
					msgs[k] = message.NewMessage(uuid.NewString(), fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i))
					msgs[k].Metadata.Set("key", fmt.Sprint(rand.IntN(4)))
					c.ids = append(c.ids, msgs[k].UUID)
				}
				c.start = time.Now()
				c.err = pub.Publish(topic, msgs...)
				c.end = time.Now()
				cmu.Lock()
				calls = append(calls, c)
				cmu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	d, cutP := 3*time.Second, 0.02
	if os.Getenv("STRATA_LONG_FAULTS") == "1" {
		d, cutP = 30*time.Second, 0.03
	}
	st := faultproxy.TwoPhaseStorm(ctx, d, cutP, p)
	stopPublishers()
	wg.Wait()
	if st.Cuts == 0 {
		t.Fatal("the storm cut nothing")
	}

	// What the store holds, read directly.
	var all []uuid.UUID
	for _, c := range calls {
		for _, id := range c.ids {
			all = append(all, pubsub.EventID(topic, id))
		}
	}
	rows, err := db.Pool.Query(ctx, `SELECT event_id, count(*) FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()+
		` WHERE event_id = ANY($1) GROUP BY event_id`, all)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[uuid.UUID]int{}
	var id uuid.UUID
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { stored[id] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	var ok, failed, ambiguous, ambiguousStored int
	for _, c := range calls {
		for _, mid := range c.ids {
			got := stored[pubsub.EventID(topic, mid)]
			switch {
			case c.err == nil:
				ok++
				if got != 1 {
					t.Errorf("Publish returned nil; message %s stored %d times, want once", mid, got)
				}
			case errors.Is(c.err, eventstore.ErrAmbiguous):
				ambiguous++
				if got > 1 {
					t.Errorf("ambiguous Publish: message %s stored %d times", mid, got)
				}
				ambiguousStored += got
			default:
				failed++
				if got != 0 {
					var rec time.Time
					_ = db.Pool.QueryRow(ctx, `SELECT recorded_at FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()+` WHERE event_id = $1`, pubsub.EventID(topic, mid)).Scan(&rec)
					t.Errorf("Publish returned %v; message %s stored %d times, want none (call %v..%v, recorded at %v)", c.err, mid, got,
						c.start.Format("05.000"), c.end.Format("05.000"), rec.Format("05.000"))
				}
			}
		}
	}

	// Every stored message is delivered at least once.
	recovered := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing := 0
		smu.Lock()
		for _, c := range calls {
			for _, mid := range c.ids {
				if stored[pubsub.EventID(topic, mid)] > 0 && seen[mid] == 0 {
					missing++
				}
			}
		}
		smu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stored messages never delivered 60s after the faults stopped", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// No server process of a lost connection is left in a transaction,
	// holding the cluster's gap-safe readers.
	if err := faultproxy.WaitNoneHeld(ctx, db.Pool, app, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var parked int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "dead_letters"}.Sanitize()).Scan(&parked); err != nil {
		t.Fatal(err)
	}
	if parked != 0 {
		t.Errorf("%d messages parked; the consumer acked every message it got (after at most a few nacks)", parked)
	}
	smu.Lock()
	deliveries := 0
	for _, k := range seen {
		deliveries += k
	}
	smu.Unlock()
	t.Logf("%d Publish calls: %d messages acknowledged, %d refused with an error, %d ambiguous (%d of them stored); "+
		"faults for %v: %d connections cut (%d CutAll, %d blackholes); %d deliveries of %d stored messages (%d nacked); all delivered %v after the faults",
		len(calls), ok, failed, ambiguous, ambiguousStored, d, st.Cuts, st.CutAlls, st.Blackholes, deliveries, len(stored), nacked.Load(),
		time.Since(recovered).Round(time.Millisecond))
}

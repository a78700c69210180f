package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
)

// faultRun is how long a fault test injects faults and how likely a
// statement is cut: a few seconds in the normal suite (and the fault-gated
// run), 30 s with STRATA_LONG_FAULTS=1.
func faultRun() (time.Duration, float64) {
	if os.Getenv("STRATA_LONG_FAULTS") == "1" {
		return 30 * time.Second, 0.03
	}
	return 3 * time.Second, 0.02
}

// proxiedPool is a pool to db's server through a new fault proxy.
func proxiedPool(t *testing.T, db *pgtest.DB, maxConns int32) (*pgxpool.Pool, *faultproxy.Proxy) {
	t.Helper()
	cfg, p, err := faultproxy.PoolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// pgx sends a CancelRequest when it loses a connection; across a real
	// partition it would not arrive either.
	p.SetDropCancels(true)
	cfg.ConnConfig.RuntimeParams["application_name"] = "strata-faults-" + db.Schema
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, p
}

// TestRelayUnderFaults: the relay's Postgres pool and its NATS connection
// both go through fault proxies, while writers append on a direct pool.
// Postgres statements are cut at random at the worst moment; every
// connection of either proxy is cut at once, or a proxy blackholed for a
// moment, at random moments. Promise 4: once the faults stop, every event
// arrives at the broker, each stream in order, repeated only as a
// redelivery of the same message (same UUID), and JetStream holds each
// once; through a Deduplicator each has exactly one effect.
func TestRelayUnderFaults(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	direct, db := newStore(t)
	pool, pgProxy := proxiedPool(t, db, 8)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("STRATA_FAULT_LOG") == "1" {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema, Logger: quiet})

	// The proxy leads to the server that NATS_URL names, where
	// createJetStream makes the stream.
	natsAddr, err := url.Parse(natsURL())
	if err != nil {
		t.Fatal(err)
	}
	natsProxy, err := faultproxy.New(natsAddr.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = natsProxy.Close() })
	pub, err := natsjs.NewPublisher("nats://"+natsProxy.Addr(), &natsjs.Config{PublishOptions: nil})
	if err != nil {
		t.Fatalf("NATS publisher through the proxy: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	topic := uniqueTopic("faults")
	createJetStream(t, topic)
	fx := newEffects(t, db)
	dedup, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "faults", Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	r := newReceived()
	consume(ctx, t, newNATSSubscriber(t, topic), topic, r, dedup.Middleware(fx.handler))

	relay := outbox.NewRelay(store, pub, &outbox.Config{Topic: func(eventstore.Event) string { return topic },
		MaxRetryBackoff: 500 * time.Millisecond, LeaseTTL: 2 * time.Second, PollInterval: 200 * time.Millisecond, Logger: quiet})
	runRelay(t, relay)

	d, cutP := faultRun()
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				evs := []eventstore.NewEvent{{Type: "Ticked", Data: fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)}, {Type: "Ticked", Data: []byte(`{}`)}}
				_, _ = direct.Append(wctx, streamName("f", rand.IntN(40)), eventstore.Any, evs...)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// The relay runs few statements: cut them more often.
	st := faultproxy.TwoPhaseStorm(ctx, d, 3*cutP, pgProxy, natsProxy)
	stopWriters()
	wg.Wait()
	if st.Cuts == 0 {
		t.Fatal("the storm cut nothing")
	}

	var total int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()).Scan(&total); err != nil {
		t.Fatal(err)
	}
	recovered := time.Now()
	waitReceived(t, r, direct, relay, total, 30*time.Second, 5*time.Minute)
	r.check(t)
	waitEffects(t, fx, total, 30*time.Second)
	fx.check(t, total)
	if n := jetStreamMessages(t, topic); n != uint64(total) {
		t.Errorf("JetStream holds %d messages, want %d (one per event)", n, total)
	}
	if dl, err := direct.DeadLetters(ctx, relay.SubscriptionName()); err != nil || len(dl) != 0 {
		t.Errorf("dead letters after faults: %v, %v; want none", dl, err)
	}
	waitNoneHeld(t, db, 10*time.Second)
	r.mu.Lock()
	raw := r.raw
	r.mu.Unlock()
	t.Logf("%d events; faults for %v: %d connections cut (%d CutAll, %d blackholes, over Postgres and NATS, %d on NATS); "+
		"%d deliveries (%d redeliveries), each effect once; all received %v after the faults",
		total, d, st.Cuts, st.CutAlls, st.Blackholes, natsProxy.Cuts(), raw, raw-total, time.Since(recovered).Round(time.Millisecond))
}

// waitReceived waits until r has n distinct messages, and says every few
// seconds how far the relay and the consumer got and which transaction
// holds the log's readers back, if any. It fails when no new message
// arrived for stall (the relay, or the consumer, is stuck: a server
// process of a lost connection holding the log's readers shows so), or
// when they are not all there after most.
//
// The bound is on progress, not on the whole backlog: the relay publishes
// the storm's backlog within seconds of the faults' end, but the consumer
// takes each message through a Deduplicator transaction of five round
// trips, one message at a time (per-stream order), which on a loaded
// machine is 130 to 200 messages a second, less than the writers append.
func waitReceived(t *testing.T, r *received, s *eventstore.Store, relay *outbox.Relay, n int, stall, most time.Duration) {
	t.Helper()
	start := time.Now()
	last, progressed := r.distinct(), time.Now()
	next := time.Now().Add(3 * time.Second)
	for r.distinct() < n {
		if got := r.distinct(); got > last {
			last, progressed = got, time.Now()
		}
		if time.Since(progressed) > stall || time.Since(start) > most {
			t.Fatalf("received %d distinct messages of %d (none new for %v; %v in all)", r.distinct(), n,
				time.Since(progressed).Round(time.Second), time.Since(start).Round(time.Second))
		}
		if time.Now().After(next) {
			next = time.Now().Add(3 * time.Second)
			h, err := s.Horizon(context.Background(), time.Second)
			st, _ := s.SubscriptionStatuses(context.Background(), relay.SubscriptionName())
			t.Logf("received %d of %d; relay %+v; the horizon's holder: %+v (%v)", r.distinct(), n, st, h, err)
		}
		select {
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitEffects polls until n effects have committed (the consumer commits
// after it saw the message).
func waitEffects(t *testing.T, fx *effects, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for fx.count(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d effects of %d after %v", fx.count(t), n, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flakyOutputs is a broker that takes the handler's output messages,
// refusing a share of Publish calls, as one briefly unreachable would.
type flakyOutputs struct {
	mu      sync.Mutex
	got     map[string]int // output UUID → times published
	refused atomic.Int64
}

func (f *flakyOutputs) Publish(_ string, msgs ...*message.Message) error {
	if rand.IntN(10) == 0 {
		f.refused.Add(1)
		return errors.New("broker unreachable (injected)")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		f.got[m.UUID]++
	}
	return nil
}

// TestDeduplicatorUnderFaults: a consumer whose Deduplicator's pool goes
// through the fault proxy handles messages, some delivered twice at once,
// and publishes each handler's output message to a broker that refuses a
// tenth of the publishes; a failed handler or publish is a nack, and the
// message comes again (as Watermill's router does). Postgres statements
// are cut at random at the worst moment, every connection cut at once or
// the proxy blackholed at random moments. Promises 3 and 7: each message
// has exactly one effect, and each handler's output is published at least
// once — also when the transaction that recorded the message committed
// but its answer was lost.
func TestDeduplicatorUnderFaults(t *testing.T) {
	t.Parallel()
	_, db := newStore(t)
	pool, p := proxiedPool(t, db, 8)
	fx := newEffects(t, db)
	dedup, err := outbox.NewDeduplicator(pool, &outbox.DeduplicatorConfig{Consumer: "faults", Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	h := dedup.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		tx, ok := outbox.TxFromContext(msg.Context())
		if !ok {
			return nil, errors.New("no transaction in the message context")
		}
		if _, err := tx.Exec(msg.Context(), `INSERT INTO `+fx.table+` (message_id, stream_id, version) VALUES ($1, 'in', 0)`, msg.UUID); err != nil {
			return nil, err
		}
		handled.Add(1)
		return []*message.Message{message.NewMessage("out-"+msg.UUID, []byte(`{}`))}, nil
	})
	outputs := &flakyOutputs{got: map[string]int{}}

	d, cutP := faultRun()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deliveries := make(chan string, 64)
	var sent []string
	var nacks, duplicates atomic.Int64
	var giveUp atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range deliveries {
				// Deliver until acked: the handler and the publish of
				// its outputs both succeeded.
				for {
					msg := message.NewMessage(id, []byte(`{}`))
					msg.SetContext(context.Background())
					out, err := h(msg)
					if err == nil {
						err = outputs.Publish("out", out...)
					}
					if err == nil || giveUp.Load() {
						break
					}
					nacks.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	feederDone := make(chan struct{})
	go func() {
		defer close(feederDone)
		for i := 0; ctx.Err() == nil; i++ {
			id := fmt.Sprintf("m-%06d", i)
			sent = append(sent, id)
			deliveries <- id
			if i%5 == 0 {
				duplicates.Add(1)
				deliveries <- id // delivered twice, perhaps at once
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	st := faultproxy.TwoPhaseStorm(ctx, d, cutP, p)
	cancel()
	<-feederDone
	close(deliveries)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recovered := time.Now()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		// Cut everything so that stuck consumers return before the
		// pool's cleanup waits for them.
		giveUp.Store(true)
		_ = p.Close()
		<-done
		t.Fatalf("consumers not done 60s after the faults stopped (%d effects of %d messages)", fx.count(t), len(sent))
	}
	if st.Cuts == 0 {
		t.Fatal("the storm cut nothing")
	}
	// No server process of a lost connection is left in a transaction,
	// holding a message's lock and every gap-safe reader of the cluster.
	waitNoneHeld(t, db, 10*time.Second)
	var rows, distinct int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT message_id) FROM `+fx.table).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != len(sent) || distinct != len(sent) {
		t.Errorf("effects: %d rows for %d distinct messages, want %d each", rows, distinct, len(sent))
	}
	outputs.mu.Lock()
	defer outputs.mu.Unlock()
	republished := 0
	for _, id := range sent {
		switch n := outputs.got["out-"+id]; {
		case n == 0:
			t.Errorf("the output of %s was never published", id)
		case n > 1:
			republished += n - 1
		}
	}
	t.Logf("%d messages (%d delivered twice); faults for %v: %d connections cut (%d CutAll, %d blackholes); "+
		"%d handler runs, %d nacks (%d publishes refused), %d outputs published again; done %v after the faults",
		len(sent), duplicates.Load(), d, st.Cuts, st.CutAlls, st.Blackholes, handled.Load(), nacks.Load(), outputs.refused.Load(),
		republished, time.Since(recovered).Round(time.Millisecond))
}

// waitNoneHeld fails t if a server process of this test's proxied
// connections (application name strata-faults-<schema>) still holds a
// transaction ID, a snapshot or an advisory lock after d: once the test's
// work is done, one that does belongs to a connection the client lost,
// and holds a message's lock and the cluster's gap-safe readers.
func waitNoneHeld(t *testing.T, db *pgtest.DB, d time.Duration) {
	t.Helper()
	if err := faultproxy.WaitNoneHeld(context.Background(), db.Pool, "strata-faults-"+db.Schema, d); err != nil {
		t.Fatal(err)
	}
}

// recorder is a broker that keeps what it was given.
type recorder struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (r *recorder) Publish(_ string, msgs ...*message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.ids[m.UUID] = true
	}
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id]
}

// TestRelayStartsThroughDatabaseOutage: the database cannot be reached
// when the relay starts (the proxy refuses connections), then can. Run
// must not give up — a database outage ends the relay no more than a
// broker outage does — and once the database is back the relay publishes.
// Before the fix Run returned the subscription's registration error, and
// a relay started during a blip, or whose start-up statement was cut,
// never ran.
func TestRelayStartsThroughDatabaseOutage(t *testing.T) {
	t.Parallel()
	direct, db := newStore(t)
	pool, p := proxiedPool(t, db, 4)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema, Logger: quiet})
	pub := &recorder{ids: map[string]bool{}}
	p.SetRefuse(true)
	pool.Reset() // no connection made before the outage survives it
	relay := outbox.NewRelay(store, pub, &outbox.Config{RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond,
		PollInterval: 100 * time.Millisecond, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned during a database outage: %v", err)
	case <-time.After(time.Second):
	}
	p.SetRefuse(false)
	ev := eventstore.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "Placed", Data: []byte(`{}`)}
	if _, err := direct.Append(ctx, "order-1", eventstore.NoStream, ev); err != nil {
		t.Fatal(err)
	}
	id := ev.ID.String()
	deadline := time.Now().Add(30 * time.Second)
	for !pub.has(id) {
		select {
		case err := <-done:
			t.Fatalf("Run returned: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the event was not published within 30s of the database coming back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

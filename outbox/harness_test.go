package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
	"github.com/strata-go/strata/outbox/rabbitmq"
)

func natsURL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func amqpURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// uniqueTopic returns a topic (a JetStream stream name, a subject and a
// RabbitMQ queue name at once) unique to this run, so that tests never see
// each other's messages.
func uniqueTopic(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

func newStore(t testing.TB) (*eventstore.Store, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	return eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema}), db
}

// createJetStream creates a file-backed JetStream stream named topic
// capturing the subject topic, deleted when the test ends.
func createJetStream(t testing.TB, topic string) {
	t.Helper()
	nc, err := nats.Connect(natsURL())
	if err != nil {
		t.Fatalf("NATS at %s: %v", natsURL(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: topic, Subjects: []string{topic}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatalf("create JetStream stream: %v", err)
	}
	t.Cleanup(func() {
		defer nc.Close()
		// The server may have been restarted by the test; retry briefly.
		for i := 0; i < 50; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := js.DeleteStream(ctx, topic)
			cancel()
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// jetStreamMessages returns how many messages the JetStream stream holds.
func jetStreamMessages(t testing.TB, topic string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func newNATSPublisher(t testing.TB) message.Publisher {
	t.Helper()
	pub, err := natsjs.NewPublisher(natsURL(), nil)
	if err != nil {
		t.Fatalf("NATS publisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func newNATSSubscriber(t testing.TB, durable string) message.Subscriber {
	t.Helper()
	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:              natsURL(),
		SubscribersCount: 1,
		AckWaitTimeout:   30 * time.Second,
		CloseTimeout:     5 * time.Second,
		NatsOptions:      []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)},
		Unmarshaler:      &natsjs.Marshaler{},
		JetStream: wmnats.JetStreamConfig{
			DurablePrefix:    durable,
			SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit(), nats.MaxAckPending(4096)},
			AckAsync:         true,
		},
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("NATS subscriber: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func newRabbitPublisher(t testing.TB) message.Publisher {
	t.Helper()
	pub, err := rabbitmq.NewPublisher(amqpURL(), nil)
	if err != nil {
		t.Fatalf("RabbitMQ publisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func newRabbitSubscriber(t testing.TB, topic string) message.Subscriber {
	t.Helper()
	sub, err := wmamqp.NewSubscriber(wmamqp.NewDurableQueueConfig(amqpURL()), watermill.NopLogger{})
	if err != nil {
		t.Fatalf("RabbitMQ subscriber: %v", err)
	}
	t.Cleanup(func() {
		_ = sub.Close()
		if conn, err := amqp091.Dial(amqpURL()); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(topic, false, false, false)
			}
			_ = conn.Close()
		}
	})
	return sub
}

// received is what a test consumer saw, before and after deduplication.
type received struct {
	mu         sync.Mutex
	raw        int                         // deliveries
	ids        map[string]string           // "stream/version" → message UUID first seen
	max        map[string]int64            // stream → highest version seen
	violations []string                    // order or identity violations
	at         map[string]time.Time        // message UUID → first receipt
	changed    chan struct{}               // pinged on every new distinct message
	meta       map[string]message.Metadata // message UUID → metadata of first receipt
}

func newReceived() *received {
	return &received{ids: map[string]string{}, max: map[string]int64{}, at: map[string]time.Time{}, changed: make(chan struct{}, 1), meta: map[string]message.Metadata{}}
}

// see records a delivery and checks the stream order: a message may repeat
// an earlier one (same stream, version and UUID: a redelivery) but never
// skip ahead of a version not yet seen.
func (r *received) see(msg *message.Message) {
	stream, version, ok := outbox.StreamVersion(msg)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw++
	if !ok {
		r.violations = append(r.violations, "message "+msg.UUID+" lacks stream/version metadata")
		return
	}
	key := fmt.Sprintf("%s/%d", stream, version)
	if first, seen := r.ids[key]; seen {
		if first != msg.UUID {
			r.violations = append(r.violations, fmt.Sprintf("%s delivered as %s and as %s", key, first, msg.UUID))
		}
		return
	}
	if version != r.max[stream]+1 {
		r.violations = append(r.violations, fmt.Sprintf("stream %s: version %d arrived after %d", stream, version, r.max[stream]))
	}
	r.max[stream] = max(r.max[stream], version)
	r.ids[key] = msg.UUID
	r.at[msg.UUID] = now
	r.meta[msg.UUID] = msg.Metadata
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *received) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func (r *received) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range r.violations {
		if i == 10 {
			t.Errorf("… and %d more", len(r.violations)-10)
			break
		}
		t.Error(v)
	}
}

// waitFor polls until r holds n distinct messages or the deadline passes.
func (r *received) waitFor(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for r.distinct() < n {
		select {
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("received %d distinct messages of %d within %v", r.distinct(), n, timeout)
		}
	}
}

// consume runs the messages of topic through handler (if not nil) and
// records them in r, acking on success and nacking on error, until ctx ends.
func consume(ctx context.Context, t testing.TB, sub message.Subscriber, topic string, r *received, handler message.HandlerFunc) *sync.WaitGroup {
	t.Helper()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for msg := range ch {
			r.see(msg)
			if handler != nil {
				if _, err := handler(msg); err != nil {
					msg.Nack()
					continue
				}
			}
			msg.Ack()
		}
	})
	return &wg
}

// effects is a consumer's Postgres read model: one row per handled
// message, deliberately without a unique key, so a doubled effect shows.
type effects struct {
	table string
	db    *pgtest.DB
}

func newEffects(t testing.TB, db *pgtest.DB) *effects {
	t.Helper()
	e := &effects{table: pgx.Identifier{db.Schema, "effects"}.Sanitize(), db: db}
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE `+e.table+` (id bigint GENERATED ALWAYS AS IDENTITY, message_id text, stream_id text, version bigint)`); err != nil {
		t.Fatal(err)
	}
	return e
}

// handler writes the effect through the Deduplicator's transaction.
func (e *effects) handler(msg *message.Message) ([]*message.Message, error) {
	tx, ok := outbox.TxFromContext(msg.Context())
	if !ok {
		return nil, fmt.Errorf("no transaction in the message context")
	}
	stream, version, _ := outbox.StreamVersion(msg)
	_, err := tx.Exec(msg.Context(), `INSERT INTO `+e.table+` (message_id, stream_id, version) VALUES ($1, $2, $3)`, msg.UUID, stream, version)
	return nil, err
}

// count returns how many effects committed.
func (e *effects) count(t testing.TB) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+e.table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// check asserts exactly one effect per message, n in all, and each
// stream's effects in version order.
func (e *effects) check(t testing.TB, n int) {
	t.Helper()
	ctx := context.Background()
	var total, distinct int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT message_id) FROM `+e.table).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if total != n || distinct != n {
		t.Errorf("effects: %d rows for %d distinct messages, want %d each", total, distinct, n)
	}
	var bad int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT version - lag(version, 1, 0::bigint) OVER (PARTITION BY stream_id ORDER BY id) AS step FROM `+e.table+`) s
		WHERE step <> 1`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("effects: %d out of stream order", bad)
	}
}

// appendAll appends perStream events to each of streams streams, chunk
// events per append, from 4 writers that each own a quarter of the
// streams and go round-robin over them, so that the log interleaves them.
func appendAll(ctx context.Context, t testing.TB, store *eventstore.Store, prefix string, streams, perStream, chunk int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for from := 1; from <= perStream; from += chunk {
				for s := w; s < streams; s += 4 {
					stream := streamName(prefix, s)
					evs := make([]eventstore.NewEvent, 0, chunk)
					for v := from; v < from+chunk && v <= perStream; v++ {
						evs = append(evs, eventstore.NewEvent{Type: "Ticked", Data: fmt.Appendf(nil, `{"n":%d}`, v),
							Metadata: eventstore.Metadata{CorrelationID: "corr-" + stream, Values: map[string]string{"traceparent": testTraceparent}}})
					}
					if _, err := store.Append(ctx, stream, eventstore.Exactly(int64(from-1)), evs...); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Errorf("append: %v", err)
	default:
	}
}

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func streamName(prefix string, i int) string { return fmt.Sprintf("%s-%03d", prefix, i) }

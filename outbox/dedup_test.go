package outbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
)

// failOnce is a real publisher that refuses its first Publish, as a broker
// briefly unreachable would.
type failOnce struct {
	message.Publisher
	failed atomic.Int32
}

func (p *failOnce) Publish(topic string, msgs ...*message.Message) error {
	if p.failed.CompareAndSwap(0, 1) {
		return errors.New("broker unreachable (injected)")
	}
	return p.Publisher.Publish(topic, msgs...)
}

func newDeduplicator(t testing.TB, db *pgtest.DB, cfg outbox.DeduplicatorConfig) *outbox.Deduplicator {
	t.Helper()
	cfg.Schema = db.Schema
	d, err := outbox.NewDeduplicator(db.Pool, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func countProcessed(t testing.TB, db *pgtest.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "processed_messages"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A handler's output messages are published by the router after the
// Deduplicator's transaction committed. When that publish fails, the
// router nacks, and the redelivery (a duplicate) hands the stored outputs
// back so the router publishes them: the output arrives, the effect
// happened once.
func TestDeduplicateRepublishesOutputsAfterFailedPublish(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, db := newStore(t)
	fx := newEffects(t, db)
	d := newDeduplicator(t, db, outbox.DeduplicatorConfig{Consumer: "billing"})

	logger := watermill.NopLogger{}
	bus := gochannel.NewGoChannel(gochannel.Config{}, logger)
	defer bus.Close()
	invoices, err := bus.Subscribe(ctx, "invoices")
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	pub := &failOnce{Publisher: bus}
	var runs atomic.Int32
	var produced atomic.Value // the output's UUID
	router.AddHandler("billing", "orders", bus, "invoices", pub, d.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		runs.Add(1)
		if _, err := fx.handler(msg); err != nil {
			return nil, err
		}
		out := message.NewMessage(watermill.NewUUID(), []byte(`{"invoice":"for `+msg.UUID+`"}`))
		out.Metadata.Set("order", msg.Metadata.Get(outbox.MetaStream))
		produced.Store(out.UUID)
		return []*message.Message{out}, nil
	}))
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-router.Running():
	case <-ctx.Done():
		t.Fatal("router did not start")
	}

	in := message.NewMessage(uuid.NewString(), []byte(`{}`))
	in.Metadata.Set(outbox.MetaStream, "order-1")
	in.Metadata.Set(outbox.MetaVersion, "1")
	if err := bus.Publish("orders", in); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-invoices:
		got.Ack()
		if want, _ := produced.Load().(string); got.UUID != want || got.Metadata.Get("order") != "order-1" ||
			string(got.Payload) != `{"invoice":"for `+in.UUID+`"}` {
			t.Errorf("output %s %s %v, want UUID %s of the handler's output", got.UUID, got.Payload, got.Metadata, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the handler's output never arrived (publish attempts failed: %d, handler runs: %d)", pub.failed.Load(), runs.Load())
	}
	if pub.failed.Load() != 1 {
		t.Error("the injected publish failure did not happen")
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	fx.check(t, 1)
}

// A duplicate delivery hands back the first delivery's outputs byte for
// byte: UUID, payload and metadata, also where they are not valid UTF-8.
func TestDeduplicateDuplicateReturnsStoredOutputs(t *testing.T) {
	t.Parallel()
	_, db := newStore(t)
	d := newDeduplicator(t, db, outbox.DeduplicatorConfig{Consumer: "echo"})
	runs := 0
	h := d.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		runs++
		a := message.NewMessage("out-\xff-1", []byte{0, 1, 2, 0xff})
		a.Metadata.Set("k\xfe", "v\x00\xff")
		a.Metadata.Set("plain", "value")
		b := message.NewMessage(watermill.NewUUID(), nil)
		return []*message.Message{a, b}, nil
	})
	first, err := h(message.NewMessage("in-1", nil))
	if err != nil {
		t.Fatal(err)
	}
	again, err := h(message.NewMessage("in-1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if runs != 1 {
		t.Fatalf("handler ran %d times, want 1", runs)
	}
	if len(again) != len(first) {
		t.Fatalf("duplicate returned %d messages, want %d", len(again), len(first))
	}
	for i := range first {
		if again[i].UUID != first[i].UUID || !bytes.Equal(again[i].Payload, first[i].Payload) || !maps.Equal(again[i].Metadata, first[i].Metadata) {
			t.Errorf("output %d: duplicate gave %q %q %q, want %q %q %q", i,
				again[i].UUID, again[i].Payload, again[i].Metadata, first[i].UUID, first[i].Payload, first[i].Metadata)
		}
	}
	// A handler without outputs has none on a duplicate either.
	none := d.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	for range 2 {
		if out, err := none(message.NewMessage("in-2", nil)); err != nil || out != nil {
			t.Fatalf("no outputs: got %v, %v", out, err)
		}
	}
}

// A message without a usable ID (empty UUID from a foreign producer, NUL,
// invalid UTF-8, too long) is refused with ErrInvalidMessageID: the
// handler does not run and nothing is recorded, so the router nacks it (or
// a poison queue takes it) instead of acknowledging it unhandled.
// DeduplicatorConfig.MessageID deduplicates such messages by a key of the
// user's choosing.
func TestDeduplicateRefusesMessageWithoutID(t *testing.T) {
	t.Parallel()
	_, db := newStore(t)
	d := newDeduplicator(t, db, outbox.DeduplicatorConfig{Consumer: "foreign"})
	runs := 0
	h := d.Middleware(func(*message.Message) ([]*message.Message, error) { runs++; return nil, nil })
	for _, id := range []string{"", "", "a\x00b", "\xff\xfe", strings.Repeat("x", 1025)} {
		_, err := h(message.NewMessage(id, []byte(`{}`)))
		if !errors.Is(err, outbox.ErrInvalidMessageID) {
			t.Errorf("message ID %.20q: error %v, want ErrInvalidMessageID", id, err)
		}
	}
	if runs != 0 {
		t.Errorf("handler ran %d times for messages without a usable ID", runs)
	}
	if n := countProcessed(t, db); n != 0 {
		t.Errorf("%d records written for refused messages", n)
	}
	// The longest accepted ID.
	if _, err := h(message.NewMessage(strings.Repeat("x", 1024), nil)); err != nil || runs != 1 {
		t.Errorf("1024-byte ID: %v (runs %d)", err, runs)
	}

	// Deduplicating by the producer's own ID.
	byMeta := newDeduplicator(t, db, outbox.DeduplicatorConfig{Consumer: "by-meta",
		MessageID: func(m *message.Message) string { return m.Metadata.Get("producer_id") }})
	seen := map[string]int{}
	h = byMeta.Middleware(func(m *message.Message) ([]*message.Message, error) {
		seen[m.Metadata.Get("producer_id")]++
		return nil, nil
	})
	for _, pid := range []string{"p-1", "p-2", "p-1", ""} {
		m := message.NewMessage("", nil)
		if pid != "" {
			m.Metadata.Set("producer_id", pid)
		}
		_, err := h(m)
		if pid == "" {
			if !errors.Is(err, outbox.ErrInvalidMessageID) {
				t.Errorf("empty key: %v, want ErrInvalidMessageID", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if seen["p-1"] != 1 || seen["p-2"] != 1 || len(seen) != 2 {
		t.Errorf("handled %v, want p-1 and p-2 once each", seen)
	}

	// Through a router: the message goes to the poison queue, not lost.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	logger := watermill.NopLogger{}
	bus := gochannel.NewGoChannel(gochannel.Config{}, logger)
	defer bus.Close()
	poisoned, err := bus.Subscribe(ctx, "poison")
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	poison, err := middleware.PoisonQueueWithFilter(bus, "poison", func(err error) bool { return errors.Is(err, outbox.ErrInvalidMessageID) })
	if err != nil {
		t.Fatal(err)
	}
	var routed atomic.Int32
	handle := poison(d.Middleware(func(*message.Message) ([]*message.Message, error) { routed.Add(1); return nil, nil }))
	router.AddConsumerHandler("foreign", "in", bus, func(m *message.Message) error { _, err := handle(m); return err })
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-router.Running()
	for _, body := range []string{"first", "second"} {
		if err := bus.Publish("in", message.NewMessage("", []byte(body))); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-poisoned:
			m.Ack()
			if string(m.Payload) != body || !strings.Contains(m.Metadata.Get(middleware.ReasonForPoisonedKey), "no usable ID") {
				t.Errorf("poisoned %q (reason %q), want %q", m.Payload, m.Metadata.Get(middleware.ReasonForPoisonedKey), body)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("message %q without ID never reached the poison queue", body)
		}
	}
	if n := routed.Load(); n != 0 {
		t.Errorf("handler ran %d times for messages without ID", n)
	}
}

// While a slow handler runs inside Deduplicate, its transaction holds no
// transaction ID, so gap-safe readers of the log are not held back by it:
// an event appended after the handler started is read while it still runs.
func TestDeduplicateSlowHandlerDoesNotHoldBackReaders(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, db := newStore(t)
	fx := newEffects(t, db)
	d := newDeduplicator(t, db, outbox.DeduplicatorConfig{Consumer: "slow"})
	started, release := make(chan struct{}), make(chan struct{})
	var xidDuringHandler *int64
	var handlerPID int32
	h := d.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		tx, _ := outbox.TxFromContext(msg.Context())
		if err := tx.QueryRow(msg.Context(), `SELECT pg_current_xact_id_if_assigned()::text::bigint, pg_backend_pid()`).Scan(&xidDuringHandler, &handlerPID); err != nil {
			return nil, err
		}
		close(started)
		<-release
		return fx.handler(msg)
	})
	done := make(chan error, 1)
	go func() {
		msg := message.NewMessage(uuid.NewString(), nil)
		msg.Metadata.Set(outbox.MetaStream, "slow-1")
		msg.Metadata.Set(outbox.MetaVersion, "1")
		_, err := h(msg)
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("handler failed before it started: %v", err)
	}
	released := false
	defer func() {
		if !released {
			close(release)
			<-done
		}
	}()
	if xidDuringHandler != nil {
		t.Errorf("the handler's transaction holds transaction ID %d before the handler wrote anything", *xidDuringHandler)
	}
	res, err := store.Append(ctx, "later-1", eventstore.NoStream, eventstore.NewEvent{Type: "Happened", Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	// Other tests' open transactions may delay the gap-safe read too: poll.
	deadline := time.Now().Add(60 * time.Second)
	for {
		page, err := store.ReadAll(ctx, eventstore.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 1 && page.Events[0].StreamID == "later-1" {
			break
		}
		if time.Now().After(deadline) {
			heldBy := holdersBelow(t, db, res.Position.TxID)
			if slices.Contains(heldBy, handlerPID) {
				t.Fatalf("ReadAll did not return the event appended while a handler ran: the handler's transaction (pid %d) holds it back", handlerPID)
			}
			t.Fatalf("ReadAll held back for 60 s by other sessions' open transactions (pids %v), not by the handler's", heldBy)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	released = true
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fx.check(t, 1)
}

// A handler that appends with AppendTx to a stream another writer appended
// to while the handler ran is not refused with ErrOutOfOrder: its
// transaction takes its ID at its first write, after the other writer's.
func TestDeduplicateAppendTxAfterConcurrentAppend(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, db := newStore(t)
	d := newDeduplicator(t, db, outbox.DeduplicatorConfig{Consumer: "ledger"})
	started, release := make(chan struct{}), make(chan struct{})
	h := d.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		close(started)
		<-release
		tx, _ := outbox.TxFromContext(msg.Context())
		_, err := store.AppendTx(msg.Context(), tx, "acct-1", eventstore.Any, eventstore.NewEvent{Type: "Credited", Data: []byte(`{}`)})
		return nil, err
	})
	done := make(chan error, 1)
	go func() {
		_, err := h(message.NewMessage(uuid.NewString(), nil))
		done <- err
	}()
	<-started
	_, err := store.Append(ctx, "acct-1", eventstore.Any, eventstore.NewEvent{Type: "Opened", Data: []byte(`{}`)})
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("handler's AppendTx after a concurrent append: %v", err)
	}
	if v, err := store.StreamVersion(ctx, "acct-1"); err != nil || v != 2 {
		t.Errorf("acct-1 at version %d (%v), want 2", v, err)
	}
}

// Expire deletes in batches of at most ExpireBatch rows, one statement
// each, and deletes every old record and no recent one.
func TestDeduplicateExpireInBatches(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db := newStore(t)
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	d := newDeduplicator(t, db, outbox.DeduplicatorConfig{Consumer: "exp", Now: func() time.Time { return now }})
	table := pgx.Identifier{db.Schema, "processed_messages"}.Sanitize()
	batches := pgx.Identifier{db.Schema, "expire_batches"}.Sanitize()
	old := 2*outbox.ExpireBatch + 345
	// Old rows, recent rows, and another consumer's old rows.
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO %s (consumer, message_id, processed_at) SELECT 'exp', 'old-' || i, $1::timestamptz - i * interval '1 second' FROM generate_series(1, %d) i`, table, old),
		fmt.Sprintf(`INSERT INTO %s (consumer, message_id, processed_at) SELECT 'exp', 'new-' || i, $1::timestamptz + i * interval '1 second' FROM generate_series(1, 500) i`, table),
		fmt.Sprintf(`INSERT INTO %s (consumer, message_id, processed_at) SELECT 'other', 'old-' || i, $1::timestamptz - interval '1 hour' FROM generate_series(1, 100) i`, table),
	} {
		if _, err := db.Pool.Exec(ctx, q, now.Add(-24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// A statement-level trigger records how many rows each DELETE removed.
	for _, q := range []string{
		`CREATE TABLE ` + batches + ` (n bigint)`,
		`CREATE FUNCTION ` + pgx.Identifier{db.Schema, "record_batch"}.Sanitize() + `() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO ` + batches + ` SELECT count(*) FROM gone; RETURN NULL; END $$`,
		`CREATE TRIGGER record_batch AFTER DELETE ON ` + table + ` REFERENCING OLD TABLE AS gone
			FOR EACH STATEMENT EXECUTE FUNCTION ` + pgx.Identifier{db.Schema, "record_batch"}.Sanitize() + `()`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	n, err := d.Expire(ctx, 24*time.Hour)
	if err != nil || n != int64(old) {
		t.Fatalf("Expire = %d, %v; want %d", n, err, old)
	}
	rows, err := db.Pool.Query(ctx, `SELECT n FROM `+batches)
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, s := range sizes {
		sum += s
		if s > outbox.ExpireBatch {
			t.Errorf("one DELETE removed %d rows, more than the batch of %d", s, outbox.ExpireBatch)
		}
	}
	if sum != int64(old) || len(sizes) < 3 {
		t.Errorf("batches %v: %d rows in %d statements, want %d in at least 3", sizes, sum, len(sizes), old)
	}
	var left, recent, others int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE consumer = 'exp' AND message_id LIKE 'old-%'),
			count(*) FILTER (WHERE consumer = 'exp' AND message_id LIKE 'new-%'), count(*) FILTER (WHERE consumer = 'other') FROM `+table).Scan(&left, &recent, &others); err != nil {
		t.Fatal(err)
	}
	if left != 0 || recent != 500 || others != 100 {
		t.Errorf("after Expire: %d old, %d recent, %d of another consumer; want 0, 500, 100", left, recent, others)
	}
	// Nothing left to expire: one empty batch.
	if n, err := d.Expire(ctx, 24*time.Hour); err != nil || n != 0 {
		t.Errorf("second Expire = %d, %v; want 0", n, err)
	}
}

// holdersBelow returns the server processes whose open transaction has an
// ID below xid (xid8; pg_stat_activity shows 32-bit IDs without their
// epoch): those that hold back a gap-safe reader of an event of xid.
func holdersBelow(t testing.TB, db *pgtest.DB, xid uint64) []int32 {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity
		WHERE backend_xid IS NOT NULL AND backend_xid::text::bigint < $1`, int64(xid%(1<<32)))
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

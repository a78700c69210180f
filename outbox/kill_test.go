package outbox_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
	"github.com/strata-go/strata/outbox/rabbitmq"
)

// TestRelayChild is the relay process that TestRelaySurvivesSIGKILL starts
// and kills; it does nothing in an ordinary run.
func TestRelayChild(t *testing.T) {
	if os.Getenv("STRATA_OUTBOX_CHILD") != "1" {
		t.Skip("child process of TestRelaySurvivesSIGKILL")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("STRATA_OUTBOX_DB"))
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: os.Getenv("STRATA_OUTBOX_SCHEMA")})
	topic := os.Getenv("STRATA_OUTBOX_TOPIC")
	var relay *outbox.Relay
	cfg := &outbox.Config{Name: "kill", LeaseTTL: time.Second, Topic: func(eventstore.Event) string { return topic }}
	switch os.Getenv("STRATA_OUTBOX_BROKER") {
	case "nats":
		pub, err := natsjs.NewPublisher(natsURL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		relay = outbox.NewRelay(store, pub, cfg)
	case "rabbitmq":
		pub, err := rabbitmq.NewPublisher(amqpURL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		relay = outbox.NewRelay(store, pub, cfg)
	}
	t.Fatal(relay.Run(ctx)) // runs until killed
}

// TestRelaySurvivesSIGKILL relays 10,000 events over 200 streams (2,000
// unless STRATA_FAULT_TESTS=1), appended
// while the relay process is killed with SIGKILL four times midway and
// restarted. Every event must reach the consumer, each stream in order
// (a message may only repeat an earlier one, never skip ahead), and the
// Deduplicate-wrapped consumer must have exactly one effect per event.
// On NATS the Nats-Msg-Id header (= event ID) makes the server drop the
// re-publications, so the JetStream stream holds exactly 10,000 messages.
func TestRelaySurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	for _, broker := range []string{"nats", "rabbitmq"} {
		t.Run(broker, func(t *testing.T) {
			t.Parallel()
			testRelaySIGKILL(t, broker)
		})
	}
}

func testRelaySIGKILL(t *testing.T, broker string) {
	// The full 10,000 events take longer than the ordinary suite allows
	// (the consumer handles one message per Postgres transaction, in
	// order); the ordinary run relays 2,000 over the same 200 streams.
	streams, perStream, chunk := 200, 10, 2
	if os.Getenv("STRATA_FAULT_TESTS") == "1" {
		perStream, chunk = 50, 5
	}
	total := streams * perStream
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, db := newStore(t)
	topic := uniqueTopic("kill")
	fx := newEffects(t, db)
	dedup, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "kill-test", Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	r := newReceived()
	switch broker {
	case "nats":
		createJetStream(t, topic)
		consume(ctx, t, newNATSSubscriber(t, topic), topic, r, dedup.Middleware(fx.handler))
	case "rabbitmq":
		consume(ctx, t, newRabbitSubscriber(t, topic), topic, r, dedup.Middleware(fx.handler))
	}

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		appendAll(ctx, t, store, "tick", streams, perStream, chunk)
	}()

	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRelayChild$", "-test.v")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(os.Environ(), "STRATA_OUTBOX_CHILD=1", "STRATA_OUTBOX_DB="+db.URL, "STRATA_OUTBOX_SCHEMA="+db.Schema,
			"STRATA_OUTBOX_BROKER="+broker, "STRATA_OUTBOX_TOPIC="+topic)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	kill := func(cmd *exec.Cmd, out *bytes.Buffer) {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("relay child ended by itself (%v):\n%s", err, out.String())
		}
	}

	midway := 0
	for i := 0; i < 4; i++ {
		cmd, out := start()
		// Let this child make progress (the previous one's lease must
		// expire first), then kill it wherever it is.
		before := r.distinct()
		deadline := time.Now().Add(15 * time.Second)
		for r.distinct() < min(before+total/14, total) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		got := r.distinct()
		kill(cmd, out)
		if got < total {
			midway++
		}
		t.Logf("%s: kill %d after %d of %d events received", broker, i+1, got, total)
	}
	cmd, out := start()
	defer kill(cmd, out)
	r.waitFor(t, total, 90*time.Second)
	<-writerDone

	r.check(t)
	if midway < 3 {
		t.Errorf("only %d kills landed midway; the test proves nothing", midway)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+db.Schema+`.effects`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fx.check(t, total)
	r.mu.Lock()
	t.Logf("%s: %d deliveries for %d events (%d redelivered), one effect each", broker, r.raw, total, r.raw-total)
	r.mu.Unlock()
	if broker == "nats" {
		if n := jetStreamMessages(t, topic); n != uint64(total) {
			t.Errorf("JetStream stream holds %d messages, want %d (Nats-Msg-Id deduplication)", n, total)
		}
	}
	dl, err := store.DeadLetters(ctx, outbox.SubscriptionPrefix+"kill")
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
}

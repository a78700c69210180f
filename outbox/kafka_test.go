package outbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
	"github.com/strata-go/strata/outbox/kafka/kafkatest"
)

// The Kafka tests run against an in-process Kafka-protocol cluster
// (kafkatest, franz-go's kfake): three brokers, six partitions per topic,
// the real wire protocol, consumer groups and idempotent producers.

func newKafkaPublisher(t testing.TB, addrs []string) message.Publisher {
	t.Helper()
	pub, err := kafka.NewPublisher(addrs, nil)
	if err != nil {
		t.Fatalf("Kafka publisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func newKafkaSubscriber(t testing.TB, addrs []string, group string) message.Subscriber {
	t.Helper()
	sub, err := kafka.NewSubscriber(addrs, group, nil)
	if err != nil {
		t.Fatalf("Kafka subscriber: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// waitKafkaGroup waits until group has settled with members members, so
// that a test's faults do not land on the group's first join (which a
// loaded machine can stretch past the test's patience).
func waitKafkaGroup(t testing.TB, c *kafkatest.Cluster, group string, members int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.Kfake().WaitGroupStable(ctx, group, members); err != nil {
		t.Fatalf("group %s did not settle with %d members: %v", group, members, err)
	}
}

// createKafkaTopic creates topic with six partitions (and the topic
// configuration given, if any).
func createKafkaTopic(t testing.TB, c *kafkatest.Cluster, topic string, configs map[string]string) {
	t.Helper()
	if err := c.Kfake().CreateTopic(topic, 6, configs); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// TestKafkaRelayChild is the relay process that TestKafkaRelaySurvivesSIGKILL
// starts and kills; it does nothing in an ordinary run.
func TestKafkaRelayChild(t *testing.T) {
	if os.Getenv("STRATA_OUTBOX_KAFKA_CHILD") != "1" {
		t.Skip("child process of TestKafkaRelaySurvivesSIGKILL")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("STRATA_OUTBOX_DB"))
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: os.Getenv("STRATA_OUTBOX_SCHEMA")})
	topic := os.Getenv("STRATA_OUTBOX_TOPIC")
	pub, err := kafka.NewPublisher(strings.Split(os.Getenv("STRATA_OUTBOX_KAFKA"), ","), nil)
	if err != nil {
		t.Fatal(err)
	}
	relay := outbox.NewRelay(store, pub, &outbox.Config{Name: "kill", LeaseTTL: time.Second, Permanent: kafka.Permanent,
		Topic: func(eventstore.Event) string { return topic }})
	t.Fatal(relay.Run(ctx)) // runs until killed
}

// TestKafkaRelaySurvivesSIGKILL is TestRelaySurvivesSIGKILL on Kafka: 2,000
// events over 200 streams appended while the relay process (an idempotent
// Sarama producer) is killed with SIGKILL four times midway and restarted.
// Every event reaches the consumer group, each stream in order (a message
// may only repeat an earlier one), and the Deduplicate-wrapped consumer
// has exactly one effect per event.
func TestKafkaRelaySurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	c := kafkatest.Start(t, nil)
	streams, perStream, chunk := 200, 10, 2
	total := streams * perStream
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, db := newStore(t)
	topic := uniqueTopic("kill")
	createKafkaTopic(t, c, topic, nil)
	fx := newEffects(t, db)
	dedup, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "kill-test", Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	r := newReceived()
	consume(ctx, t, newKafkaSubscriber(t, c.Addrs(), "kill-test"), topic, r, dedup.Middleware(fx.handler))
	waitKafkaGroup(t, c, "kill-test", 1)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		appendAll(ctx, t, store, "tick", streams, perStream, chunk)
	}()
	env := []string{"STRATA_OUTBOX_KAFKA_CHILD=1", "STRATA_OUTBOX_DB=" + db.URL, "STRATA_OUTBOX_SCHEMA=" + db.Schema,
		"STRATA_OUTBOX_TOPIC=" + topic, "STRATA_OUTBOX_KAFKA=" + strings.Join(c.Addrs(), ",")}
	midway := killRelayChildren(t, "^TestKafkaRelayChild$", env, r, total)
	r.waitFor(t, total, 90*time.Second)
	<-writerDone

	r.check(t)
	if midway < 3 {
		t.Errorf("only %d kills landed midway; the test proves nothing", midway)
	}
	waitEffects(t, fx, total, 30*time.Second)
	fx.check(t, total)
	r.mu.Lock()
	t.Logf("kafka: %d deliveries for %d events (%d redelivered), one effect each", r.raw, total, r.raw-total)
	r.mu.Unlock()
	if dl, err := store.DeadLetters(ctx, outbox.SubscriptionPrefix+"kill"); err != nil || len(dl) != 0 {
		t.Errorf("dead letters: %v, %v; want none", dl, err)
	}
}

// TestKafkaRelayBrokerOutage takes the whole cluster away for 3 s while
// events are appended and relayed: "unreachable" cuts every connection
// and refuses new ones (a network partition; the brokers keep their
// state), "stopped" closes the brokers and starts them again on the same
// ports from their data directory. The relay reports itself unhealthy,
// dead-letters nothing, and once the brokers are back every event
// arrives, each stream in order.
func TestKafkaRelayBrokerOutage(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"unreachable", "stopped"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			if mode == "stopped" && os.Getenv("STRATA_KAFKA_RESTART") != "1" {
				t.Skip("kfake's stop and restart loses acknowledged records now and then (see the issue note); set STRATA_KAFKA_RESTART=1")
			}
			testKafkaOutage(t, mode)
		})
	}
}

func testKafkaOutage(t *testing.T, mode string) {
	c := kafkatest.Start(t, nil)
	ctx := t.Context()
	store, _ := newStore(t)
	topic := uniqueTopic("outage")
	createKafkaTopic(t, c, topic, nil)
	r := newReceived()
	consume(ctx, t, newKafkaSubscriber(t, c.Addrs(), "outage-test"), topic, r, nil)
	waitKafkaGroup(t, c, "outage-test", 1)
	relay := outbox.NewRelay(store, newKafkaPublisher(t, c.Addrs()), &outbox.Config{
		Topic: func(eventstore.Event) string { return topic }, MaxRetryBackoff: time.Second, Permanent: kafka.Permanent,
	})
	runRelay(t, relay)

	const streams, perStream = 50, 40
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		// Paced so that appends go on before, during and after the outage.
		for from := 1; from <= perStream; from += 4 {
			appendRound(t, store, "out", streams, from, 4)
			time.Sleep(300 * time.Millisecond)
		}
	}()
	r.waitFor(t, 200, 90*time.Second)
	if mode == "stopped" {
		c.Stop()
	} else {
		c.SetUnreachable(true)
	}
	stopped := time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for relay.Health().Healthy {
		if time.Now().After(deadline) {
			t.Fatal("relay still healthy with the brokers down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("unhealthy after %v: %v", time.Since(stopped).Round(time.Millisecond), relay.Health().LastError)
	atStop := r.distinct()
	for time.Since(stopped) < 3*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	if mode == "stopped" {
		if err := c.Restart(); err != nil {
			t.Fatal(err)
		}
	} else {
		c.SetUnreachable(false)
	}
	t.Logf("brokers down for %v; %d of %d events received before", time.Since(stopped).Round(time.Millisecond), atStop, streams*perStream)
	<-writerDone
	r.waitFor(t, streams*perStream, 90*time.Second)
	r.check(t)
	if t.Failed() {
		r.mu.Lock()
		v := r.violations[0]
		r.mu.Unlock()
		dumpKafkaStream(t, c.Addrs(), topic, strings.TrimSuffix(strings.Fields(v)[1], ":"))
	}
	deadline = time.Now().Add(10 * time.Second)
	for !relay.Health().Healthy && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h := relay.Health(); !h.Healthy {
		t.Errorf("relay health after recovery: %+v", h)
	}
	if dl, err := store.DeadLetters(ctx, relay.SubscriptionName()); err != nil || len(dl) != 0 {
		t.Errorf("dead letters after an outage: %v, %v; want none", dl, err)
	}
}

// TestKafkaRefusedMessageDeadLetters: the topic accepts messages of at
// most 4 KiB; one event of 48 KiB (incompressible) is refused by the
// broker every time (MESSAGE_TOO_LARGE). kafka.Permanent marks the error
// permanent, so that event becomes a dead letter after MaxAttempts, the
// later events of its stream are parked behind it, and every other
// stream's events arrive.
func TestKafkaRefusedMessageDeadLetters(t *testing.T) {
	t.Parallel()
	c := kafkatest.Start(t, nil)
	ctx := t.Context()
	store, _ := newStore(t)
	topic := uniqueTopic("refused")
	createKafkaTopic(t, c, topic, map[string]string{"max.message.bytes": "4096"})
	r := newReceived()
	consume(ctx, t, newKafkaSubscriber(t, c.Addrs(), "refused-test"), topic, r, nil)
	relay := outbox.NewRelay(store, newKafkaPublisher(t, c.Addrs()), &outbox.Config{
		Topic: func(eventstore.Event) string { return topic }, Permanent: kafka.Permanent, MaxAttempts: 3,
		RetryBackoff: 20 * time.Millisecond,
	})
	runRelay(t, relay)

	big := make([]byte, 36<<10)
	_, _ = rand.Read(big)
	payload := `{"blob":"` + base64.StdEncoding.EncodeToString(big) + `"}`
	appendRound(t, store, "ok", 10, 1, 3)
	if _, err := store.Append(ctx, "bad-1", eventstore.NoStream,
		eventstore.NewEvent{Type: "Ticked", Data: []byte(`{}`)},
		eventstore.NewEvent{Type: "Huge", Data: []byte(payload)},
		eventstore.NewEvent{Type: "Ticked", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	appendRound(t, store, "ok", 10, 4, 3)
	r.waitFor(t, 10*6+1, 60*time.Second)
	// The refused event is dead-lettered; its stream's next event is
	// parked behind it.
	var dl []eventstore.DeadLetter
	deadline := time.Now().Add(30 * time.Second)
	for len(dl) < 2 && time.Now().Before(deadline) {
		var err error
		if dl, err = store.DeadLetters(ctx, relay.SubscriptionName()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(dl) != 2 || dl[0].StreamID != "bad-1" || dl[0].Type != "Huge" || dl[0].BlockedBy != 0 || dl[1].BlockedBy != dl[0].ID {
		t.Fatalf("dead letters %+v, want bad-1's Huge and the event parked behind it", dl)
	}
	t.Logf("dead letter after %d attempts: %s", dl[0].Attempts, dl[0].Error)
	if !strings.Contains(dl[0].Error, "too large") {
		t.Errorf("dead letter's error %q does not say the broker refused the size", dl[0].Error)
	}
	r.mu.Lock()
	_, v3 := r.ids["bad-1/3"]
	r.mu.Unlock()
	if v3 {
		t.Error("bad-1 v3 was published past its stream's dead letter")
	}
	r.check(t)
}

// TestKafkaConsumerGroupOrder relays 3,000 events of 60 streams through a
// topic of six partitions to one consumer group of two members, each
// wrapped in the same Deduplicator. Once both have joined, the key (the
// stream ID) keeps each stream in one partition: every stream is handled
// by one member, in order. Then the second member leaves mid-run: its
// partitions move to the first, which receives what was acked but not
// yet committed again, and Deduplicate leaves one effect per event.
func TestKafkaConsumerGroupOrder(t *testing.T) {
	t.Parallel()
	c := kafkatest.Start(t, nil)
	ctx := t.Context()
	store, db := newStore(t)
	topic := uniqueTopic("group")
	createKafkaTopic(t, c, topic, nil)
	fx := newEffects(t, db)
	dedup, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "group-test", Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	const streams, perStream = 60, 50
	total := streams * perStream
	all := newReceived()
	members := []*received{newReceived(), newReceived()}
	var mu sync.Mutex
	owner := map[string]int{} // stream → member that first handled it
	crossed := 0
	ctx2, leave := context.WithCancel(ctx)
	for i, m := range members {
		mctx := ctx
		if i == 1 {
			mctx = ctx2
		}
		handler := dedup.Middleware(fx.handler)
		consume(mctx, t, newKafkaSubscriber(t, c.Addrs(), "group-test"), topic, m, func(msg *message.Message) ([]*message.Message, error) {
			all.see(msg)
			stream, _, _ := outbox.StreamVersion(msg)
			mu.Lock()
			if o, ok := owner[stream]; !ok {
				owner[stream] = i
			} else if o != i && ctx2.Err() == nil {
				crossed++
			}
			mu.Unlock()
			return handler(msg)
		})
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := c.Kfake().WaitGroupStable(wctx, "group-test", 2); err != nil {
		t.Fatalf("the group did not settle with two members: %v", err)
	}
	relay := outbox.NewRelay(store, newKafkaPublisher(t, c.Addrs()), &outbox.Config{Topic: func(eventstore.Event) string { return topic }})
	runRelay(t, relay)
	appendAll(ctx, t, store, "grp", streams, perStream, 5)

	all.waitFor(t, total/2, 90*time.Second)
	mu.Lock()
	crossedBefore := crossed
	mu.Unlock()
	leave()
	t.Logf("member 2 left after %d of %d events (member 1: %d, member 2: %d)", all.distinct(), total, members[0].distinct(), members[1].distinct())
	all.waitFor(t, total, 90*time.Second)
	all.check(t)
	waitEffects(t, fx, total, 30*time.Second)
	fx.check(t, total)
	if crossedBefore != 0 {
		t.Errorf("%d messages reached a member other than their stream's while both were in the group", crossedBefore)
	}
	if members[0].distinct() == 0 || members[1].distinct() == 0 {
		t.Errorf("one member had all the work (%d, %d): the group did not share the partitions", members[0].distinct(), members[1].distinct())
	}
	all.mu.Lock()
	t.Logf("%d deliveries for %d events, one effect each", all.raw, total)
	all.mu.Unlock()
}

// killRelayChildren starts the relay child test (run names it) four times,
// each time killing it with SIGKILL once it made some progress, and
// returns how many kills landed before r had all total messages. It leaves
// a fifth child running until the test ends.
func killRelayChildren(t *testing.T, run string, env []string, r *received, total int) int {
	t.Helper()
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(os.Environ(), env...)
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
	for i := range 4 {
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
		t.Logf("kill %d after %d of %d events received", i+1, got, total)
	}
	cmd, out := start()
	t.Cleanup(func() { kill(cmd, out) })
	return midway
}

// TestKafkaSubscriberNeedsGroup: a subscriber without a consumer group is
// refused with ErrNoGroup.
func TestKafkaSubscriberNeedsGroup(t *testing.T) {
	if _, err := kafka.NewSubscriber([]string{"127.0.0.1:1"}, "", nil); !errors.Is(err, kafka.ErrNoGroup) {
		t.Fatalf("NewSubscriber without a group: %v, want ErrNoGroup", err)
	}
}

// dumpKafkaStream logs where each record of stream sits in topic's log
// (partition, offset, version), read with franz-go's own client: whether
// an order violation is in the log or in the consumer.
func dumpKafkaStream(t *testing.T, addrs []string, topic, stream string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Log(err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var lines []string
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) != stream {
				return
			}
			var v, id string
			for _, h := range r.Headers {
				switch h.Key {
				case outbox.MetaVersion:
					v = string(h.Value)
				case "_watermill_message_uuid":
					id = string(h.Value)
				}
			}
			lines = append(lines, fmt.Sprintf("p%d@%d v%s %s", r.Partition, r.Offset, v, id))
		})
	}
	t.Logf("stream %s in the log: %s", stream, strings.Join(lines, ", "))
}

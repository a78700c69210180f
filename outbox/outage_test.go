package outbox_test

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
)

func natsCtl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("start-stop-daemon", args...).CombinedOutput(); err != nil {
		t.Logf("start-stop-daemon %v: %v: %s", args, err, out)
	}
}

func startNATS(t *testing.T) {
	natsCtl(t, "--start", "--oknodo", "--background", "--exec", "/usr/sbin/nats-server", "--",
		"-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Error("NATS did not come back on 127.0.0.1:4222")
}

// TestRelayBrokerOutage stops the NATS server for several seconds while
// events are appended and relayed: the relay reports itself unhealthy,
// backs off, dead-letters nothing, and once NATS is back every event
// arrives, each stream in order.
func TestRelayBrokerOutage(t *testing.T) {
	if os.Getenv("STRATA_FAULT_TESTS") != "1" {
		t.Skip("fault test: set STRATA_FAULT_TESTS=1")
	}
	t.Cleanup(func() { startNATS(t) }) // whatever happens
	ctx := t.Context()
	store, _ := newStore(t)
	topic := uniqueTopic("outage")
	createJetStream(t, topic)
	r := newReceived()
	consume(ctx, t, newNATSSubscriber(t, topic), topic, r, nil)
	relay := outbox.NewRelay(store, newNATSPublisher(t), &outbox.Config{
		Topic: func(eventstore.Event) string { return topic }, MaxRetryBackoff: time.Second,
	})
	runRelay(t, relay)

	const streams, perStream = 50, 40
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		// Paced so that appends go on before, during and after the outage.
		for from := 1; from <= perStream; from += 4 {
			appendRound(t, store, "out", streams, from, 4)
			time.Sleep(400 * time.Millisecond)
		}
	}()
	r.waitFor(t, 200, 30*time.Second)
	natsCtl(t, "--stop", "--exec", "/usr/sbin/nats-server")
	stopped := time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for relay.Health().Healthy {
		if time.Now().After(deadline) {
			t.Fatal("relay still healthy with NATS down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h := relay.Health()
	t.Logf("unhealthy after %v: %v", time.Since(stopped).Round(time.Millisecond), h.LastError)
	atStop := r.distinct()
	for time.Since(stopped) < 5*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	startNATS(t)
	t.Logf("NATS down for %v; %d of %d events received before", time.Since(stopped).Round(time.Millisecond), atStop, streams*perStream)
	<-writerDone
	r.waitFor(t, streams*perStream, 90*time.Second)
	r.check(t)
	deadline = time.Now().Add(10 * time.Second)
	for !relay.Health().Healthy && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h := relay.Health(); !h.Healthy || h.FailingSince.IsZero() == false {
		t.Errorf("relay health after recovery: %+v", h)
	}
	if dl, err := store.DeadLetters(ctx, relay.SubscriptionName()); err != nil || len(dl) != 0 {
		t.Errorf("dead letters after an outage: %v, %v; want none", dl, err)
	}
	if n := jetStreamMessages(t, topic); n != streams*perStream {
		t.Errorf("JetStream holds %d messages, want %d", n, streams*perStream)
	}
}

// appendRound appends versions [from, from+n) to each stream.
func appendRound(t *testing.T, store *eventstore.Store, prefix string, streams, from, n int) {
	t.Helper()
	for s := range streams {
		evs := make([]eventstore.NewEvent, n)
		for i := range evs {
			evs[i] = eventstore.NewEvent{Type: "Ticked", Data: []byte(`{}`)}
		}
		if _, err := store.Append(t.Context(), streamName(prefix, s), eventstore.Exactly(int64(from-1)), evs...); err != nil {
			t.Error(err)
			return
		}
	}
}

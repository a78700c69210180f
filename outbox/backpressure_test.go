package outbox_test

import (
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/outbox"
)

// stalledBroker is a broker that takes messages but acknowledges none
// until released: Publish blocks. It records how many calls and messages
// it holds at once.
type stalledBroker struct {
	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	taken       int // messages handed to Publish so far
	release     chan struct{}
	full        chan struct{} // closed when inFlight first reaches want
	want        int
}

func (b *stalledBroker) Publish(_ string, msgs ...*message.Message) error {
	b.mu.Lock()
	b.inFlight++
	b.taken += len(msgs)
	b.maxInFlight = max(b.maxInFlight, b.inFlight)
	if b.inFlight == b.want {
		select {
		case <-b.full:
		default:
			close(b.full)
		}
	}
	b.mu.Unlock()
	<-b.release
	b.mu.Lock()
	b.inFlight--
	b.mu.Unlock()
	return nil
}

func (b *stalledBroker) Close() error { return nil }

// TestRelayBackpressure: with a broker that acknowledges nothing, the
// relay holds at most one batch (BatchSize events) and publishes at most
// Concurrency streams at once; the rest of the log waits in Postgres.
// Once the broker acknowledges, everything is published.
func TestRelayBackpressure(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	const streams, perStream, batch, concurrency = 100, 5, 100, 8
	appendRound(t, store, "bp", streams, 1, perStream)
	b := &stalledBroker{release: make(chan struct{}), full: make(chan struct{}), want: concurrency}
	relay := outbox.NewRelay(store, b, &outbox.Config{BatchSize: batch, Concurrency: concurrency})
	runRelay(t, relay)
	select {
	case <-b.full:
	case <-time.After(30 * time.Second):
		t.Fatal("the relay never had Concurrency publishes in flight")
	}
	time.Sleep(300 * time.Millisecond) // room to overshoot, if it would
	b.mu.Lock()
	maxInFlight, taken := b.maxInFlight, b.taken
	b.mu.Unlock()
	if maxInFlight != concurrency {
		t.Errorf("%d publishes in flight at once, want Concurrency = %d", maxInFlight, concurrency)
	}
	if taken > batch {
		t.Errorf("%d messages handed to a broker that acknowledged none, more than one batch (%d)", taken, batch)
	}
	close(b.release)
	deadline := time.Now().Add(60 * time.Second)
	for relay.Health().Published < streams*perStream {
		if time.Now().After(deadline) {
			t.Fatalf("published %d of %d after the broker came back", relay.Health().Published, streams*perStream)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("with the broker stalled: %d publishes in flight, %d messages held (batch %d, concurrency %d)", maxInFlight, taken, batch, concurrency)
}

var _ message.Publisher = (*stalledBroker)(nil)

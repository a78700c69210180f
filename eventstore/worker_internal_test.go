package eventstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-go/strata/internal/pgtest"
)

// Every subscription this package's tests run checks its workers' state
// invariant after each step (see worker), and panics, failing the run, on
// the first breach.
func init() { checkInvariants = true }

// TestWorkerInvariantCatchesEachBreach: checkInvariant accepts a worker's
// states that keep the invariant and names each clause a state breaks.
func TestWorkerInvariantCatchesEachBreach(t *testing.T) {
	sub := &Subscription{cfg: SubscriptionConfig{Name: "inv"}}
	at := func(seq int64) Position { return Position{TxID: 10, Seq: seq} }
	now := time.Now()
	good := []worker{
		{sub: sub, stored: now},
		{sub: sub, cp: at(1), readAt: at(1), stored: now},
		{sub: sub, cp: at(1), readAt: at(5), stored: now}, // a filtered read passed over events
		{sub: sub, cp: at(1), readAt: at(5), pending: 64, pendingT: now, stored: now},
		{sub: sub, cp: at(1), readAt: at(1), stored: now, resets: 2, parked: map[string]int64{"a-1": 7}},
	}
	for i, w := range good {
		if err := w.checkInvariant(); err != nil {
			t.Errorf("good state %d: %v", i, err)
		}
	}
	bad := []struct {
		w    worker
		want string
	}{
		{worker{sub: sub, cp: at(5), readAt: at(1), stored: now}, "before cp"},
		{worker{sub: sub, cp: at(1), readAt: at(1), pending: -1, stored: now}, "pending -1"},
		{worker{sub: sub, cp: at(1), readAt: at(1), pending: 3, pendingT: now, stored: now}, "not past cp"},
		{worker{sub: sub, cp: at(1), readAt: at(2), pending: 3, stored: now}, "without pendingT"},
		{worker{sub: sub, cp: at(1), readAt: at(1)}, "stored not set"},
		{worker{sub: sub, resets: -1, stored: now}, "resets -1"},
		{worker{sub: sub, stored: now, parked: map[string]int64{"a-1": 0}}, "dead letter 0"},
	}
	for i, b := range bad {
		err := b.w.checkInvariant()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("bad state %d: got %v, want an error saying %q", i, err, b.want)
		}
	}
}

// parkTest is a leased partition of a subscription with one event to park.
type parkTest struct {
	s   *Store
	sub *Subscription
	cp  checkpoint
	e   Event
}

func newParkTest(t *testing.T) *parkTest {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	s := New(db.Pool, &Config{Schema: db.Schema})
	if _, err := s.Append(ctx, "a-1", NoStream, NewEvent{Type: "Tick", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	var e Event
	for ev, err := range s.ReadStream(ctx, "a-1", 0) {
		if err != nil {
			t.Fatal(err)
		}
		e = ev
	}
	sub, err := s.Subscription(SubscriptionConfig{Name: "park", Owner: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.register(ctx); err != nil {
		t.Fatal(err)
	}
	claimed, _, _, err := sub.maintain(ctx, 0)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	return &parkTest{s: s, sub: sub, cp: claimed[0], e: e}
}

// row is what another connection sees, in one snapshot, of the partition
// and its dead letters.
type parkRow struct {
	deadLetters int
	cp          Position
	state       string
	lastErr     *string
}

func (pt *parkTest) row(t *testing.T) parkRow {
	t.Helper()
	var r parkRow
	var tx int64
	err := pt.s.pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM `+pt.s.schema+`.dead_letters WHERE subscription = 'park')::int,
			position_tx, position_seq, state, last_error
		FROM `+pt.s.schema+`.subscriptions WHERE name = 'park' AND partition = 0`).Scan(&r.deadLetters, &tx, &r.cp.Seq, &r.state, &r.lastErr)
	if err != nil {
		t.Fatal(err)
	}
	r.cp.TxID = uint64(tx)
	return r
}

// TestParkIsOneStep: parking an event records its dead letter, moves the
// checkpoint past it and clears the partition's failing state at once.
// Another connection watching throughout never sees a dead letter without
// its checkpoint (or the reverse), nor a parked event under a failing
// state; and a fenced park (the partition was reset meanwhile) writes
// nothing at all.
func TestParkIsOneStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pt := newParkTest(t)

	w := newWorker(pt.sub, 0, pt.cp)
	w.setState(ctx, "failing", "boom")

	// Fenced: a worker that does not know of the latest reset.
	stale := newWorker(pt.sub, 0, checkpoint{pt.cp.Position, pt.cp.resets + 1})
	if err := stale.park(ctx, pt.e, 5, errors.New("boom")); !errors.Is(err, errFenced) {
		t.Fatalf("a fenced park returned %v, want errFenced", err)
	}
	if r := pt.row(t); r.deadLetters != 0 || r.cp != pt.cp.Position || r.state != "failing" {
		t.Fatalf("a fenced park changed the partition: %+v", r)
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	var mu sync.Mutex
	var seen []parkRow
	wg.Go(func() {
		for {
			r := pt.row(t)
			mu.Lock()
			seen = append(seen, r)
			mu.Unlock()
			select {
			case <-done:
				return
			default:
			}
		}
	})
	err := w.park(ctx, pt.e, 5, errors.New("boom"))
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, pt.row(t))
	for _, r := range seen {
		parked := r.deadLetters == 1 && r.cp == pt.e.Position && r.state == "running" && r.lastErr == nil
		before := r.deadLetters == 0 && r.cp == pt.cp.Position && r.state == "failing"
		if !parked && !before {
			t.Fatalf("half-parked: %+v (event at %v)", r, pt.e.Position)
		}
	}
	if last := seen[len(seen)-1]; last.deadLetters != 1 {
		t.Fatalf("after park: %+v", last)
	}
	if w.cp != pt.e.Position || w.readAt != pt.e.Position || w.parked["a-1"] <= 0 {
		t.Fatalf("worker after park: cp %v readAt %v parked %v", w.cp, w.readAt, w.parked)
	}
	if err := w.checkInvariant(); err != nil {
		t.Fatal(err)
	}
	dl, err := pt.s.DeadLetters(ctx, "park")
	if err != nil || len(dl) != 1 || dl[0].EventID != pt.e.ID || dl[0].Position != pt.e.Position || dl[0].Attempts != 5 || dl[0].Error != "boom" {
		t.Fatalf("dead letters %+v, %v", dl, err)
	}
}

package eventstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// logReader is a checkpointing reader of the global log, as a projection
// would be: it remembers only the last position it handled.
type logReader struct {
	s          *eventstore.Store
	checkpoint eventstore.Position
	limit      int
	filter     eventstore.Filter
	seen       map[uuid.UUID]int
	order      []eventstore.Event
}

func newLogReader(s *eventstore.Store, limit int) *logReader {
	return &logReader{s: s, limit: limit, seen: map[uuid.UUID]int{}}
}

// poll reads from the checkpoint to the current end of the readable log.
func (r *logReader) poll(t *testing.T) {
	t.Helper()
	for {
		page, err := r.s.ReadAllFiltered(context.Background(), r.checkpoint, r.limit, r.filter)
		if err != nil {
			t.Errorf("read: %v", err)
			return
		}
		for _, e := range page.Events {
			if !r.checkpoint.Less(e.Position) {
				t.Errorf("position went backwards: %v after %v", e.Position, r.checkpoint)
			}
			r.seen[e.ID]++
			r.order = append(r.order, e)
			r.checkpoint = e.Position
		}
		if page.Next.Less(r.checkpoint) {
			t.Errorf("Next %v is before the last event read %v", page.Next, r.checkpoint)
		}
		r.checkpoint = page.Next
		if page.AtEnd {
			return
		}
	}
}

// until polls until cond holds or the deadline passes. Any open transaction
// on the server (other test packages too) may delay a gap-safe reader, so
// tests wait instead of asserting after one read.
func (r *logReader) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r.poll(t)
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (read %d events)", what, len(r.order))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Promise 2: a transaction that took an early position and commits late is
// neither skipped nor seen twice; a rolled-back one is never seen.
func TestLateCommitIsNotSkipped(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()

	early, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx)
	resA, err := s.AppendTx(ctx, early, "a-1", eventstore.NoStream, ev("Early", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	resB, err := s.Append(ctx, "b-1", eventstore.NoStream, ev("Later", `{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resC, err := s.Append(ctx, "c-1", eventstore.NoStream, ev("Later", `{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if !(resA.Position.Seq < resB.Position.Seq && resB.Position.Seq < resC.Position.Seq) {
		t.Fatalf("positions not taken in order: %v %v %v", resA.Position, resB.Position, resC.Position)
	}
	doomed, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, doomed, "d-1", eventstore.NoStream, ev("RolledBack", `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := doomed.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	r := newLogReader(s, 2)
	// While the early transaction is open the reader must not pass it:
	// reading the later events now and checkpointing them would skip it.
	for range 20 {
		r.poll(t)
		time.Sleep(10 * time.Millisecond)
	}
	if len(r.order) != 0 {
		t.Fatalf("reader went past an open earlier transaction: read %s", r.order[0].Type)
	}
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.until(t, "the three committed events", func() bool { return len(r.order) >= 3 })
	r.poll(t) // a further read from the checkpoint brings nothing again
	if len(r.order) != 3 {
		t.Fatalf("read %d events, want 3", len(r.order))
	}
	// What is not read must not be there to read: the rolled-back append
	// left nothing in the log itself, which holds the three alone.
	var stored, rolledBack int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE stream_id = 'd-1') FROM `+s.Table("events")).Scan(&stored, &rolledBack); err != nil ||
		stored != 3 || rolledBack != 0 {
		t.Fatalf("the log holds %d events, %d of the rolled-back append (%v); want 3 and 0", stored, rolledBack, err)
	}
	for i, want := range []string{"a-1", "b-1", "c-1"} {
		if r.order[i].StreamID != want {
			t.Fatalf("event %d is from %s, want %s", i, r.order[i].StreamID, want)
		}
	}
	if r.order[0].Position != resA.Position {
		t.Fatalf("AppendResult position %v, read %v", resA.Position, r.order[0].Position)
	}
}

// Promise 2 under load: writers commit in scrambled order (random delays
// between append and commit, some roll back) while a checkpointing reader
// with small pages reads concurrently. It must see every committed event
// exactly once and no rolled-back one, each stream in version order.
func TestScrambledCommitsConcurrentReader(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	const writers, rounds = 8, 30

	var mu sync.Mutex
	committed := map[uuid.UUID]bool{}
	rolledBack := map[uuid.UUID]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			stream := fmt.Sprintf("w-%d", w)
			for i := range rounds {
				tx, err := db.Pool.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				n := 1 + rng.IntN(3)
				evs := make([]eventstore.NewEvent, n)
				ids := make([]uuid.UUID, n)
				for k := range evs {
					ids[k] = uuid.New()
					evs[k] = eventstore.NewEvent{ID: ids[k], Type: "Step", Data: fmt.Appendf(nil, `{"i":%d,"k":%d}`, i, k)}
				}
				if _, err := s.AppendTx(ctx, tx, stream, eventstore.Any, evs...); err != nil {
					t.Error(err)
					_ = tx.Rollback(ctx)
					return
				}
				time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
				rollback := rng.IntN(5) == 0
				if rollback {
					err = tx.Rollback(ctx)
				} else {
					err = tx.Commit(ctx)
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, id := range ids {
					if rollback {
						rolledBack[id] = true
					} else {
						committed[id] = true
					}
				}
				mu.Unlock()
			}
		})
	}
	r := newLogReader(s, 7)
	// Two readers of two partitions, whose filtered reads move past the
	// events they skip, must together see the same.
	parts := []*logReader{newLogReader(s, 3), newLogReader(s, 3)}
	for i, pr := range parts {
		pr.filter = eventstore.Filter{Partitions: 2, Partition: i}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(3 * time.Millisecond):
			r.poll(t)
			parts[0].poll(t)
			parts[1].poll(t)
		}
	}
	r.until(t, "every committed event", func() bool { return len(r.seen) >= len(committed) })
	parts[0].until(t, "every committed event in partitions", func() bool {
		parts[1].poll(t)
		return len(parts[0].seen)+len(parts[1].seen) >= len(committed)
	})
	for _, pr := range parts {
		for id, n := range pr.seen {
			if n != 1 || !committed[id] {
				t.Fatalf("partition reader: event %s read %d times, committed %v", id, n, committed[id])
			}
		}
	}
	if n := len(parts[0].seen) + len(parts[1].seen); n != len(committed) {
		t.Fatalf("partition readers read %d events, %d committed", n, len(committed))
	}

	for id, n := range r.seen {
		if n != 1 {
			t.Fatalf("event %s read %d times", id, n)
		}
		if rolledBack[id] {
			t.Fatalf("rolled-back event %s was read", id)
		}
		if !committed[id] {
			t.Fatalf("read an event nobody committed: %s", id)
		}
	}
	if len(r.seen) != len(committed) {
		t.Fatalf("read %d events, %d committed", len(r.seen), len(committed))
	}
	last := map[string]int64{}
	for _, e := range r.order {
		if e.Version != last[e.StreamID]+1 {
			t.Fatalf("%s: version %d after %d", e.StreamID, e.Version, last[e.StreamID])
		}
		last[e.StreamID] = e.Version
	}
	t.Logf("%d committed, %d rolled back, all read once in order", len(committed), len(rolledBack))
}

func TestReadAllFiltered(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	for i := range 40 {
		cat := []string{"order", "payment"}[i%2]
		typ := []string{"Created", "Updated"}[i%4/2]
		if _, err := s.Append(ctx, fmt.Sprintf("%s-%d", cat, i%10), eventstore.Any, ev(typ, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	// read polls until want events passed the filter: other tests' open
	// transactions may hold the reader back for a while.
	read := func(f eventstore.Filter, want int) []eventstore.Event {
		var out []eventstore.Event
		deadline := time.Now().Add(60 * time.Second)
		after := eventstore.Position{}
		for len(out) < want && time.Now().Before(deadline) {
			page, err := s.ReadAllFiltered(ctx, after, 3, f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, page.Events...)
			after = page.Next
			if len(page.Events) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		return out
	}
	orders := read(eventstore.Filter{Categories: []string{"order"}}, 20)
	if len(orders) != 20 {
		t.Fatalf("%d order events", len(orders))
	}
	for _, e := range orders {
		if e.Category() != "order" {
			t.Fatalf("category filter let %s through", e.StreamID)
		}
	}
	created := read(eventstore.Filter{Categories: []string{"payment"}, Types: []string{"Created"}}, 10)
	if len(created) != 10 {
		t.Fatalf("%d payment Created events, want 10", len(created))
	}
	for _, e := range created {
		if e.Type != "Created" || e.Category() != "payment" {
			t.Fatalf("filter let %s %s through", e.StreamID, e.Type)
		}
	}
	// Partitions split the log by stream, and together cover it.
	total := 0
	owner := map[string]int{}
	all := read(eventstore.Filter{}, 40)
	for p := range 3 {
		want := 0
		for _, e := range all {
			if hashPartition(t, s, e.StreamID, 3) == p {
				want++
			}
		}
		for _, e := range read(eventstore.Filter{Partitions: 3, Partition: p}, want) {
			total++
			if q, ok := owner[e.StreamID]; ok && q != p {
				t.Fatalf("stream %s in partitions %d and %d", e.StreamID, q, p)
			}
			owner[e.StreamID] = p
		}
	}
	if total != 40 {
		t.Fatalf("partitions cover %d events, want 40", total)
	}
	if _, err := s.ReadAllFiltered(ctx, eventstore.Position{}, 10, eventstore.Filter{Partitions: 2, Partition: 2}); err == nil {
		t.Fatal("partition out of range accepted")
	}
}

// hashPartition asks Postgres which partition a stream falls in.
func hashPartition(t *testing.T, s *eventstore.Store, stream string, n int) int {
	t.Helper()
	var p int
	if err := s.Pool().QueryRow(context.Background(), `SELECT (hashtext($1)::bigint & 2147483647) % $2`, stream, n).Scan(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A filtered read of a category walks the category's own events: a rare
// event after many others comes back in one call, not after a scan of
// everything before it in windows; and a read that finds nothing moves
// past the events of other categories to the readable head, so that they
// are not walked again.
func TestFilteredReadMovesPastSkippedEvents(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	noise := make([]eventstore.NewEvent, 300)
	for i := range noise {
		noise[i] = ev("Noise", `{}`)
	}
	if _, err := s.Append(ctx, "noise-1", eventstore.NoStream, noise...); err != nil {
		t.Fatal(err)
	}
	rare, err := s.Append(ctx, "rare-1", eventstore.NoStream, ev("Rare", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	f := eventstore.Filter{Categories: []string{"rare"}}
	var page eventstore.Page
	// Polled: another test's transaction may hold the horizon back; the
	// first read that gets past it must return the event.
	pgtest.WaitFor(t, "the rare event", time.Minute, func() bool {
		page, err = s.ReadAllFiltered(ctx, eventstore.Position{}, 5, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Events) > 0 || rare.Position.Less(page.Next)
	})
	if len(page.Events) != 1 || page.Events[0].StreamID != "rare-1" || page.Next != page.Events[0].Position || !page.AtEnd {
		t.Fatalf("first read: %d events, next %v, at end %v; want rare-1 alone, at end", len(page.Events), page.Next, page.AtEnd)
	}
	after := page.Next
	more, err := s.Append(ctx, "noise-1", eventstore.Exactly(300), noise...)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "the read to move past the noise", time.Minute, func() bool {
		page, err = s.ReadAllFiltered(ctx, after, 5, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 0 || !page.AtEnd || page.Next.Less(after) {
			t.Fatalf("after the rare event: %d events, at end %v, next %v (after %v)", len(page.Events), page.AtEnd, page.Next, after)
		}
		return page.Next == more.Position
	})
	after = page.Next
	page, err = s.ReadAllFiltered(ctx, after, 5, f)
	if err != nil || len(page.Events) != 0 || !page.AtEnd || page.Next != after {
		t.Fatalf("after the end: %d events, at end %v, next %v (after %v), %v", len(page.Events), page.AtEnd, page.Next, after, err)
	}
}

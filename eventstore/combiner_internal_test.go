package eventstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtest"
)

// The combiner's pacing (combiner.go, takeLocked): while a statement is on
// its way, the queue starts the next one only once it holds as many
// appends as the statements on their way hold each (their mean), so that
// the appends of a busy store are spread evenly over the statements
// instead of one append starting a statement of its own each time a slot
// frees; and a queue that never grows that large goes when the statements
// on their way end.
//
// Each test holds statements on the server with session advisory locks on
// the keys of their streams (an Any append takes its stream's lock before
// it writes, alone or combined) and watches the combiner's state.

// heldStreams holds the append locks of streams on a connection of its
// own until release.
type heldStreams struct {
	t    *testing.T
	s    *Store
	conn *pgx.Conn
}

func holdStreams(t *testing.T, s *Store, db *pgtest.DB, streams ...string) *heldStreams {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	h := &heldStreams{t: t, s: s, conn: conn}
	for _, stream := range streams {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1::text, $2))`, stream, appendLockSeed(pgx.Identifier{s.cfg.Schema}.Sanitize())); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *heldStreams) release(stream string) {
	h.t.Helper()
	var ok bool
	if err := h.conn.QueryRow(context.Background(), `SELECT pg_advisory_unlock(hashtextextended($1::text, $2))`, stream, appendLockSeed(pgx.Identifier{h.s.cfg.Schema}.Sanitize())).Scan(&ok); err != nil || !ok {
		h.t.Fatalf("unlock %s: %v, %v", stream, ok, err)
	}
}

// combinerState is the combiner's statements on their way, the appends
// they hold and the appends queued.
func combinerState(c *combiner) (inFlight, flying, queued int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight, c.flying, len(c.queue)
}

// startAppend starts an Append; its error is sent on the channel.
func startAppend(s *Store, stream string, expected ExpectedVersion) <-chan error {
	out := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), stream, expected, NewEvent{Type: "Tick", Data: []byte(`{}`)})
		out <- err
	}()
	return out
}

func waitState(t *testing.T, c *combiner, what string, inFlight, flying, queued int) {
	t.Helper()
	pgtest.WaitFor(t, what, 10*time.Second, func() bool {
		i, f, q := combinerState(c)
		return i == inFlight && f == flying && q == queued
	})
}

func mustSucceed(t *testing.T, name string, c <-chan error) {
	t.Helper()
	select {
	case err := <-c:
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer in 10s", name)
	}
}

// setUpTwoHeld leaves s's combiner with its two statements held on the
// server: held-1 alone, then held-2 and held-3 combined; the others'
// statement is released and gone. It returns the holder and the appends.
func setUpTwoHeld(t *testing.T) (*Store, *heldStreams, map[string]<-chan error) {
	db := pgtest.New(t)
	s := New(db.Pool, &Config{Schema: db.Schema})
	c := s.comb
	h := holdStreams(t, s, db, "held-0", "held-1", "held-2")
	out := map[string]<-chan error{}
	// held-0 and held-1 each go at once, alone (the second because the
	// queue, one append, is as large as the statement on its way).
	out["held-0"] = startAppend(s, "held-0", Any)
	waitState(t, c, "held-0's statement on its way", 1, 1, 0)
	out["held-1"] = startAppend(s, "held-1", Any)
	waitState(t, c, "held-1's statement on its way", 2, 2, 0)
	// Both slots taken: held-2 and free-1 queue, and go together when
	// held-0's statement ends (held-2 holds it on the server).
	out["held-2"] = startAppend(s, "held-2", Any)
	waitState(t, c, "held-2 queued", 2, 2, 1)
	out["free-1"] = startAppend(s, "free-1", NoStream)
	waitState(t, c, "free-1 queued", 2, 2, 2)
	h.release("held-0")
	mustSucceed(t, "held-0", out["held-0"])
	waitState(t, c, "held-2 and free-1 combined and on their way", 2, 3, 0)
	h.release("held-1")
	mustSucceed(t, "held-1", out["held-1"])
	waitState(t, c, "held-1's statement ended", 1, 2, 0)
	return s, h, out
}

// TestCombinerQueueWaitsToMatchTheStatementOnItsWay: with a statement of
// two appends on its way and a slot free, one append waits in the queue
// (it would start a statement of its own); a second one makes the queue
// as large as that statement, and both go at once, together, while the
// first statement is still held.
func TestCombinerQueueWaitsToMatchTheStatementOnItsWay(t *testing.T) {
	t.Parallel()
	s, h, out := setUpTwoHeld(t)
	c := s.comb
	before := c.statements.Load()
	a := startAppend(s, "free-2", NoStream)
	waitState(t, c, "free-2 queued behind the statement of two", 1, 2, 1)
	b := startAppend(s, "free-3", NoStream)
	mustSucceed(t, "free-2", a)
	mustSucceed(t, "free-3", b)
	if got := c.statements.Load(); got != before+1 {
		t.Fatalf("free-2 and free-3 went in %d combined statements, want 1", got-before)
	}
	select {
	case err := <-out["held-2"]:
		t.Fatalf("held-2 answered (%v) while its stream was held", err)
	default:
	}
	h.release("held-2")
	mustSucceed(t, "held-2", out["held-2"])
	mustSucceed(t, "free-1", out["free-1"])
	waitState(t, c, "nothing left", 0, 0, 0)
}

// TestCombinerQueueGoesWhenTheStatementsEnd: an append that waits in the
// queue for more goes when the statement on its way ends, though no other
// append comes.
func TestCombinerQueueGoesWhenTheStatementsEnd(t *testing.T) {
	t.Parallel()
	s, h, out := setUpTwoHeld(t)
	c := s.comb
	a := startAppend(s, "free-2", NoStream)
	waitState(t, c, "free-2 queued behind the statement of two", 1, 2, 1)
	h.release("held-2")
	mustSucceed(t, "held-2", out["held-2"])
	mustSucceed(t, "free-1", out["free-1"])
	mustSucceed(t, "free-2", a)
	waitState(t, c, "nothing left", 0, 0, 0)
	for _, stream := range []string{"held-0", "held-1", "held-2", "free-1", "free-2"} {
		var n int
		if err := s.pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM %s WHERE stream_id = $1`, s.Table("events")), stream).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s: %d events, %v; want 1", stream, n, err)
		}
	}
}

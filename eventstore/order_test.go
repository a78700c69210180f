package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// checkLogOrder reads the whole readable log and fails unless each
// stream's versions come in order 1, 2, 3, …; it returns the events read.
// With want > 0 it reads again until it has read want events (an open
// transaction elsewhere on the server may hold gap-safe readers back for a
// while), for up to 30 seconds.
func checkLogOrder(t *testing.T, s *eventstore.Store, want ...int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := readLogInOrder(t, s)
		if len(want) == 0 || n >= want[0] || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readLogInOrder(t *testing.T, s *eventstore.Store) int {
	t.Helper()
	last := map[string]int64{}
	var after eventstore.Position
	n := 0
	for {
		page, err := s.ReadAll(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if e.Version != last[e.StreamID]+1 {
				t.Fatalf("log order: %s version %d at %s follows version %d", e.StreamID, e.Version, e.Position, last[e.StreamID])
			}
			last[e.StreamID] = e.Version
		}
		n += len(page.Events)
		if len(page.Events) == 0 {
			return n
		}
		after = page.Next
	}
}

// A caller's transaction that got its transaction ID (by an earlier
// write) before another writer appended to a stream cannot append after
// that writer in the log: AppendTx refuses with an *OutOfOrderError,
// writes nothing, leaves the transaction usable, and a retry in a new
// transaction succeeds. Without the refusal, the transaction's version 2
// would precede version 1 in the log.
func TestAppendTxRefusesToBreakLogOrder(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	for _, expected := range []eventstore.ExpectedVersion{eventstore.Any, eventstore.StreamExists, eventstore.Exactly(1)} {
		stream := fmt.Sprintf("order-%s", expected)
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) // a failure below must not leave it open
		// The transaction gets its ID now, by writing elsewhere.
		if _, err := s.AppendTx(ctx, tx, "elsewhere-"+stream, eventstore.NoStream, ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
		// A later transaction appends version 1 and commits.
		if _, err := s.Append(ctx, stream, eventstore.NoStream, ev("Tick", `{"n":1}`)); err != nil {
			t.Fatal(err)
		}
		_, err = s.AppendTx(ctx, tx, stream, expected, ev("Tick", `{"n":2}`))
		var oe *eventstore.OutOfOrderError
		if !errors.As(err, &oe) || !errors.Is(err, eventstore.ErrOutOfOrder) || errors.Is(err, eventstore.ErrConflict) || oe.StreamID != stream {
			t.Fatalf("%s: AppendTx after a later writer: %v, want an *OutOfOrderError", expected, err)
		}
		// Nothing written, and the transaction is still usable.
		if _, err := s.AppendTx(ctx, tx, "elsewhere-"+stream, eventstore.Exactly(1), ev("Tock", `{}`)); err != nil {
			t.Fatalf("%s: tx unusable after the refusal: %v", expected, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := s.StreamVersion(ctx, stream); err != nil || v != 1 {
			t.Fatalf("%s: stream at version %d (%v) after the refusal, want 1", expected, v, err)
		}
		// The retry, in a new transaction, goes after version 1.
		err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := s.AppendTx(ctx, tx, stream, expected, ev("Tick", `{"n":2}`))
			return err
		})
		if err != nil {
			t.Fatalf("%s: retry: %v", expected, err)
		}
	}
	checkLogOrder(t, s)
}

// A version conflict is still a conflict, not an order refusal.
func TestAppendTxConflictIsNotAnOrderRefusal(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.Append(ctx, "c-1", eventstore.NoStream, ev("Tick", `{}`), ev("Tick", `{}`)); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := s.AppendTx(ctx, tx, "c-1", eventstore.Exactly(1), ev("Tick", `{}`))
		return err
	})
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Actual != 2 || errors.Is(err, eventstore.ErrOutOfOrder) {
		t.Fatalf("got %v, want a conflict at version 2", err)
	}
}

// Many writers on a few streams, mixing Append and transactions that
// write elsewhere first and then AppendTx (retrying the whole transaction
// on ErrOutOfOrder, as documented): every append lands once, and each
// stream's versions are in log order.
func TestMixedAppendAndAppendTxKeepLogOrder(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	const writers, appends, streams = 8, 40, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	refusals := 0
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				stream := fmt.Sprintf("mixed-%d", rand.IntN(streams))
				expected := []eventstore.ExpectedVersion{eventstore.Any, eventstore.StreamExists}[rand.IntN(2)]
				if expected == eventstore.StreamExists {
					// Make sure it exists (Any creates it when needed).
					if _, err := s.Append(ctx, stream, eventstore.Any, ev("Tick", `{}`)); err != nil {
						t.Error(err)
						return
					}
				}
				if w%2 == 0 {
					if _, err := s.Append(ctx, stream, expected, ev("Tick", `{}`)); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				for {
					err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
						if _, err := s.AppendTx(ctx, tx, fmt.Sprintf("own-%d-%d", w, i), eventstore.NoStream, ev("Tick", `{}`)); err != nil {
							return err
						}
						_, err := s.AppendTx(ctx, tx, stream, expected, ev("Tick", `{}`))
						return err
					})
					if errors.Is(err, eventstore.ErrOutOfOrder) {
						mu.Lock()
						refusals++
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	n := checkLogOrder(t, s)
	t.Logf("%d events in log order; %d transactions refused and retried", n, refusals)
}

// Writers racing with Exactly(n) (read the version, append, retry on a
// conflict) take no lock: a writer that waited for another fails its
// check, so versions still follow the log's order.
func TestRacingExactlyKeepsLogOrder(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	const writers, appends = 6, 30
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range appends {
				for {
					v, err := s.StreamVersion(ctx, "exact-1")
					if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
						t.Error(err)
						return
					}
					_, err = s.Append(ctx, "exact-1", eventstore.Exactly(v), ev("Tick", `{}`))
					if errors.Is(err, eventstore.ErrConflict) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	if n := checkLogOrder(t, s, writers*appends); n != writers*appends {
		t.Fatalf("%d events, want %d", n, writers*appends)
	}
}

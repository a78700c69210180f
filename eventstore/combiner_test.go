package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
)

// The append combiner's tests. Each opens a window: the store's one
// statement (SetCombinerInFlight 1) is held on the server by a row lock,
// the appends under test are started one by one, each waiting in the
// combiner's queue before the next starts (so their order is known), and
// the window is closed by releasing the lock: the queue then goes as
// combined statements.

// window holds a store's statement on the server so that the appends
// started meanwhile queue behind it.
type window struct {
	t    *testing.T
	s    *eventstore.Store
	lock pgx.Tx
	gate chan error
	wg   sync.WaitGroup
}

// openWindow opens a window on s, whose tables are in db (the lock is
// taken through db's pool, which need not be s's).
func openWindow(t *testing.T, s *eventstore.Store, db *pgtest.DB) *window {
	t.Helper()
	ctx := context.Background()
	eventstore.SetCombinerInFlight(s, 1)
	if _, err := s.Append(ctx, "gate-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	lock, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lock.Rollback(context.Background()) })
	if _, err := lock.Exec(ctx, `SELECT 1 FROM `+pgx.Identifier{db.Schema, "streams"}.Sanitize()+` WHERE stream_id = 'gate-1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	w := &window{t: t, s: s, lock: lock, gate: make(chan error, 1)}
	go func() {
		_, err := s.Append(ctx, "gate-1", eventstore.Exactly(1), ev("Passed", `{}`))
		w.gate <- err
	}()
	pgtest.WaitFor(t, "the gate's append on its way", 10*time.Second, func() bool {
		inFlight, _ := eventstore.CombinerState(s)
		return inFlight == 1
	})
	return w
}

// appendResult is what one Append returned.
type appendResult struct {
	res eventstore.AppendResult
	err error
}

// append starts an Append and waits until it is queued; its result is
// sent on the channel returned.
func (w *window) append(stream string, expected eventstore.ExpectedVersion, events ...eventstore.NewEvent) <-chan appendResult {
	w.t.Helper()
	_, before := eventstore.CombinerState(w.s)
	out := make(chan appendResult, 1)
	w.wg.Go(func() {
		res, err := w.s.Append(context.Background(), stream, expected, events...)
		out <- appendResult{res, err}
	})
	pgtest.WaitFor(w.t, fmt.Sprintf("the append to %s queued", stream), 10*time.Second, func() bool {
		_, queued := eventstore.CombinerState(w.s)
		return queued == before+1
	})
	return out
}

// close releases the gate and waits for every append of the window.
func (w *window) close() {
	w.t.Helper()
	if err := w.lock.Rollback(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	if err := <-w.gate; err != nil {
		w.t.Fatalf("the gate's append: %v", err)
	}
	w.wg.Wait()
}

// TestCombinerOneStreamInOneWindow: appends to one stream queued in one
// window go one after the other, in the order they queued, each seeing
// the one before: a chain of Exactly(0), Exactly(1), … all succeed, Any
// appends stay gapless, and the versions of each stream follow the log's
// order; the appends to other streams are combined with them.
func TestCombinerOneStreamInOneWindow(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	w := openWindow(t, s, db)
	const chain, others = 5, 8
	var chained, anys, solos []<-chan appendResult
	for k := range chain {
		chained = append(chained, w.append("chain-1", eventstore.Exactly(int64(k)), ev("Linked", fmt.Sprintf(`{"k":%d}`, k))))
		anys = append(anys, w.append("any-1", eventstore.Any, ev("Ticked", fmt.Sprintf(`{"k":%d}`, k)), ev("Ticked", fmt.Sprintf(`{"k":%d}`, k))))
	}
	for i := range others {
		solos = append(solos, w.append(fmt.Sprintf("solo-%d", i), eventstore.NoStream, ev("Opened", fmt.Sprintf(`{"i":%d}`, i))))
	}
	w.close()

	for k, c := range chained {
		r := <-c
		if r.err != nil || r.res.Version != int64(k+1) {
			t.Fatalf("chain append %d (Exactly(%d)): version %d, %v; want version %d", k, k, r.res.Version, r.err, k+1)
		}
	}
	for k, c := range anys {
		if r := <-c; r.err != nil || r.res.Version != int64(2*(k+1)) {
			t.Fatalf("any append %d: version %d, %v; want %d", k, r.res.Version, r.err, 2*(k+1))
		}
	}
	for i, c := range solos {
		if r := <-c; r.err != nil || r.res.Version != 1 {
			t.Fatalf("solo-%d: version %d, %v", i, r.res.Version, r.err)
		}
	}
	for _, stream := range []string{"chain-1", "any-1"} {
		got := readStream(t, s, stream)
		for i, e := range got {
			if e.Version != int64(i+1) {
				t.Fatalf("%s: event %d has version %d", stream, i, e.Version)
			}
			var d struct{ K int }
			mustJSON(t, e.Data, &d)
			if want := i; stream == "any-1" {
				if d.K != want/2 {
					t.Fatalf("%s: version %d is of append %d, want %d (queue order)", stream, e.Version, d.K, want/2)
				}
			} else if d.K != want {
				t.Fatalf("%s: version %d is of append %d, want %d (queue order)", stream, e.Version, d.K, want)
			}
			if i > 0 && !got[i-1].Position.Less(e.Position) {
				t.Fatalf("%s: version %d at %v, not after version %d at %v in the log", stream, e.Version, e.Position, got[i-1].Version, e.Position)
			}
		}
	}
	// The first statement after the gate combined one append of each
	// stream: 2 + others.
	if appends, statements := eventstore.CombinerStats(s); appends < 2+others || statements < 1 {
		t.Fatalf("combiner sent %d appends in %d combined statements; want the window's first %d in one", appends, statements, 2+others)
	}
}

// TestCombinerFailuresStayTheirOwn: in one window with valid appends, a
// conflict, a stored event ID, two appends with one new event ID, an
// event the server refuses (a CHECK constraint) and an event Strata
// refuses: each fails with its own error, and only it.
func TestCombinerFailuresStayTheirOwn(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	// The server refuses events of type Poison (the store does not know).
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE `+pgx.Identifier{db.Schema, "events"}.Sanitize()+` ADD CONSTRAINT no_poison CHECK (event_type <> 'Poison')`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "conflict-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	stored := eventstore.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "Opened", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, "stored-1", eventstore.NoStream, stored); err != nil {
		t.Fatal(err)
	}
	twin := uuid.Must(uuid.NewV7())

	w := openWindow(t, s, db)
	var valid []<-chan appendResult
	for i := range 3 {
		valid = append(valid, w.append(fmt.Sprintf("valid-%d", i), eventstore.NoStream, ev("Opened", `{}`), ev("Noted", `{}`)))
	}
	conflict := w.append("conflict-1", eventstore.Exactly(3), ev("Noted", `{}`))
	dup := w.append("dup-1", eventstore.Any, ev("Noted", `{}`), stored)
	twins := []<-chan appendResult{
		w.append("twin-1", eventstore.Any, eventstore.NewEvent{ID: twin, Type: "Noted", Data: []byte(`{}`)}),
		w.append("twin-2", eventstore.Any, eventstore.NewEvent{ID: twin, Type: "Noted", Data: []byte(`{}`)}),
	}
	poison := w.append("poison-1", eventstore.Any, ev("Noted", `{}`), ev("Poison", `{}`))
	for i := range 3 {
		valid = append(valid, w.append(fmt.Sprintf("valid-%d", 3+i), eventstore.Any, ev("Opened", `{}`)))
	}
	// Refused before it is sent: it never waits in the queue.
	if _, err := s.Append(ctx, "bad-1", eventstore.Any, ev("Noted", `{"a":`)); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("invalid JSON: %v; want ErrInvalidEvent", err)
	}
	w.close()

	for i, c := range valid {
		if r := <-c; r.err != nil {
			t.Fatalf("valid append %d: %v", i, r.err)
		}
	}
	var ce *eventstore.ConflictError
	if r := <-conflict; !errors.As(r.err, &ce) || ce.Actual != 1 || ce.Expected != eventstore.Exactly(3) {
		t.Fatalf("conflict: %v; want a *ConflictError expecting 3, actual 1", r.err)
	}
	var de *eventstore.DuplicateEventError
	if r := <-dup; !errors.As(r.err, &de) || de.ID != stored.ID || de.StreamID != "dup-1" {
		t.Fatalf("stored event ID: %v; want a *DuplicateEventError for %s in dup-1", r.err, stored.ID)
	}
	won := 0
	for i, c := range twins {
		r := <-c
		switch {
		case r.err == nil:
			won++
		case !errors.As(r.err, &de) || de.ID != twin:
			t.Fatalf("twin %d: %v; want nil or a *DuplicateEventError for %s", i, r.err, twin)
		}
	}
	if won != 1 {
		t.Fatalf("%d of the two appends of one new event ID succeeded; want 1", won)
	}
	if r := <-poison; r.err == nil || errors.Is(r.err, eventstore.ErrConflict) || errors.Is(r.err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("poison: %v; want the server's refusal", r.err)
	}
	// Nothing of the failed appends is stored; all of the others is.
	for stream, want := range map[string]int{"conflict-1": 1, "dup-1": 0, "poison-1": 0, "bad-1": 0, "stored-1": 1,
		"valid-0": 2, "valid-1": 2, "valid-2": 2, "valid-3": 1, "valid-4": 1, "valid-5": 1} {
		var got int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()+` WHERE stream_id = $1`, stream).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s has %d events; want %d", stream, got, want)
		}
	}
	if appends, statements := eventstore.CombinerStats(s); appends < 11 || statements < 1 {
		t.Fatalf("combiner sent %d appends in %d combined statements; want the window's 11 in one", appends, statements)
	}
}

// TestCombinerConnectionCut: the connection of a combined statement is
// cut after the statement reached the server. Each caller gets the truth
// (promise 7): all stored, with the results read back, when the server
// committed; none stored, and an error for each, when the server process
// was still running it (ended by the resolution before it looks).
func TestCombinerConnectionCut(t *testing.T) {
	t.Parallel()
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%t", committed), func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			ctx := context.Background()
			// Through the proxy, with a name of its own to find its server
			// processes by.
			cfg, err := pgxpool.ParseConfig(db.URL)
			if err != nil {
				t.Fatal(err)
			}
			p, err := faultproxy.New(fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			app := "strata-combiner-cut-" + uuid.NewString()[:8]
			cc := cfg.ConnConfig
			cc.Host, cc.Port, cc.TLSConfig, cc.Fallbacks = p.Host(), p.Port(), nil, nil
			cc.RuntimeParams["application_name"] = app
			cfg.MaxConns = 6
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			s := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
			// pgx sends a CancelRequest when it loses a connection; across
			// a real partition it would not arrive.
			p.SetDropCancels(true)
			if _, err := s.Append(ctx, "held-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
				t.Fatal(err)
			}
			var hold pgx.Tx
			if !committed {
				// Keep the combined statement running on the server: it
				// waits for held-1's row.
				var err error
				if hold, err = db.Pool.Begin(ctx); err != nil {
					t.Fatal(err)
				}
				defer hold.Rollback(ctx)
				if _, err := hold.Exec(ctx, `SELECT 1 FROM `+pgx.Identifier{db.Schema, "streams"}.Sanitize()+` WHERE stream_id = 'held-1' FOR UPDATE`); err != nil {
					t.Fatal(err)
				}
			}
			w := openWindow(t, s, db)
			type call struct {
				stream string
				events []eventstore.NewEvent
				c      <-chan appendResult
			}
			var calls []call
			for i := range 5 {
				c := call{stream: fmt.Sprintf("cut-%d", i), events: withIDs(ev("Noted", `{}`), ev("Noted", `{}`))}
				c.c = w.append(c.stream, eventstore.Any, c.events...)
				calls = append(calls, c)
			}
			held := call{stream: "held-1", events: withIDs(ev("Noted", `{}`))}
			held.c = w.append(held.stream, eventstore.Exactly(1), held.events...)
			calls = append(calls, held)
			// The next statement sent is the combined one: cut it.
			upstream := faultproxy.UpstreamAfterReply
			if !committed {
				upstream = faultproxy.UpstreamHold
			}
			p.SetCut(&faultproxy.Cut{Types: "E", Upstream: upstream, Times: 1})
			before := p.Cuts()
			w.close()
			if p.Cuts() != before+1 {
				t.Fatalf("the proxy made %d cuts; want 1", p.Cuts()-before)
			}
			if hold != nil {
				// Let the combined statement go, were it still there, and
				// wait until it has run to its end.
				if err := hold.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				pgtest.WaitFor(t, "no server process of the store running a statement", 30*time.Second, func() bool {
					var n int
					if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'`, app).Scan(&n); err != nil {
						t.Fatal(err)
					}
					return n == 0
				})
			}
			direct := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
			for _, c := range calls {
				r := <-c.c
				ids := make([]uuid.UUID, len(c.events))
				for i, e := range c.events {
					ids[i] = e.ID
				}
				n := storedCount(t, db, ids...)
				switch {
				case committed && r.err != nil:
					t.Fatalf("%s: Append = %v after a cut once the server committed; want nil", c.stream, r.err)
				case committed:
					got := readStream(t, direct, c.stream)
					if n != len(ids) || r.res.Position != got[len(got)-1].Position || r.res.Version != got[len(got)-1].Version {
						t.Fatalf("%s: result %+v, %d of %d events stored, the stream ends at %+v", c.stream, r.res, n, len(ids), got[len(got)-1])
					}
				case r.err == nil || errors.Is(r.err, eventstore.ErrAmbiguous):
					t.Fatalf("%s: Append = %v; want the connection's error (not stored)", c.stream, r.err)
				case n != 0:
					t.Fatalf("%s: Append returned %v, yet %d of its events are stored", c.stream, r.err, n)
				}
			}
			if appends, _ := eventstore.CombinerStats(s); appends < int64(len(calls)) {
				t.Fatalf("combiner sent %d appends in combined statements; want the window's %d", appends, len(calls))
			}
		})
	}
}

// TestCombinerKeepsEachPrincipal: appends with different principals (and
// one with none) combined in one statement each record their own.
func TestCombinerKeepsEachPrincipal(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	w := openWindow(t, s, db)
	who := []string{"alice", "bob", "", "carol"}
	results := make([]<-chan appendResult, len(who))
	for i, p := range who {
		ctx := context.Background()
		if p != "" {
			ctx = eventstore.WithPrincipal(ctx, p)
		}
		_, before := eventstore.CombinerState(s)
		out := make(chan appendResult, 1)
		results[i] = out
		w.wg.Go(func() {
			res, err := s.Append(ctx, fmt.Sprintf("audited-%d", i), eventstore.NoStream, ev("Tick", `{}`))
			out <- appendResult{res, err}
		})
		pgtest.WaitFor(t, "the append queued", 10*time.Second, func() bool {
			_, queued := eventstore.CombinerState(s)
			return queued == before+1
		})
	}
	w.close()
	for i, ch := range results {
		r := <-ch
		if r.err != nil {
			t.Fatalf("append %d: %v", i, r.err)
		}
		var got *string
		err := db.Pool.QueryRow(context.Background(), `SELECT principal FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()+
			` WHERE stream_id = $1`, fmt.Sprintf("audited-%d", i)).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if (who[i] == "" && got != nil) || (who[i] != "" && (got == nil || *got != who[i])) {
			t.Errorf("append %d by %q recorded principal %v", i, who[i], got)
		}
	}
	if appends, statements := eventstore.CombinerStats(s); statements == 0 || appends < int64(len(who)) {
		t.Fatalf("combiner sent %d appends in %d combined statements; want the window's %d in one", appends, statements, len(who))
	}
}

// TestCombinerDoesNotWaitOnACallersRowLock: a stream row held by a
// caller's open transaction (AppendTx takes no advisory lock) must not
// hold up a combined statement's other appends, nor their deadlines: the
// statement gives up on the row at once (its lock timeout), writes
// nothing, and each append runs alone. The append to the held stream
// waits for the transaction, as a single Append does; the one to an
// unrelated stream, with a 1 s deadline, succeeds within it. The held
// stream's next append stays queued until the one before it has run
// alone, and comes after it.
func TestCombinerDoesNotWaitOnACallersRowLock(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.Append(ctx, "held-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := s.AppendTx(ctx, tx, "held-1", eventstore.Any, ev("Tick", `{}`)); err != nil {
		t.Fatal(err)
	}

	w := openWindow(t, s, db)
	held := w.append("held-1", eventstore.Any, ev("Tick", `{}`))
	next := w.append("held-1", eventstore.Any, ev("Tock", `{}`))
	_, before := eventstore.CombinerState(s)
	unrelated := make(chan appendResult, 1)
	w.wg.Go(func() {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		res, err := s.Append(dctx, "unrelated-1", eventstore.NoStream, ev("Tick", `{}`))
		unrelated <- appendResult{res, err}
	})
	pgtest.WaitFor(t, "the unrelated append queued", 10*time.Second, func() bool {
		_, queued := eventstore.CombinerState(s)
		return queued == before+1
	})
	if err := w.lock.Rollback(ctx); err != nil { // the window opens
		t.Fatal(err)
	}
	if err := <-w.gate; err != nil {
		t.Fatalf("the gate's append: %v", err)
	}
	select {
	case r := <-unrelated:
		if r.err != nil {
			t.Fatalf("the append to an unrelated stream failed: %v", r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the append to an unrelated stream, with a 1s deadline, has not returned after 3s: it waits behind a row another transaction holds")
	}
	select {
	case r := <-held:
		t.Fatalf("the append to the held stream returned while the row was held: %v", r.err)
	default:
	}
	// The held stream's first append now runs alone; its second must
	// stay queued until then, or it could overtake it.
	if _, queued := eventstore.CombinerState(s); queued != 1 {
		t.Fatalf("%d appends queued while the held stream's first append runs alone; want its second one", queued)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.wg.Wait()
	if r := <-held; r.err != nil || r.res.Version != 3 {
		t.Fatalf("the append to the held stream after the commit: version %d, %v; want 3", r.res.Version, r.err)
	}
	if r := <-next; r.err != nil || r.res.Version != 4 {
		t.Fatalf("the held stream's second append: version %d, %v; want 4", r.res.Version, r.err)
	}
	if appends, statements := eventstore.CombinerStats(s); statements == 0 || appends < 2 {
		t.Fatalf("combiner sent %d appends in %d combined statements; want the window's two in one", appends, statements)
	}
}

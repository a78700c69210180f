package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

func newStore(t *testing.T, cfg *eventstore.Config) (*eventstore.Store, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	var c eventstore.Config
	if cfg != nil {
		c = *cfg
	}
	c.Schema = db.Schema
	return eventstore.New(db.Pool, &c), db
}

func ev(typ, data string) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, Data: []byte(data)}
}

// readStream collects a whole stream, failing the test on error.
func readStream(t *testing.T, s *eventstore.Store, stream string) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for e, err := range s.ReadStream(context.Background(), stream, 0) {
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		out = append(out, e)
	}
	return out
}

func TestAppendExpectedVersions(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()

	res, err := s.Append(ctx, "order-1", eventstore.NoStream, ev("Placed", `{}`), ev("Paid", `{}`))
	if err != nil || res.Version != 2 {
		t.Fatalf("first append: %+v, %v", res, err)
	}
	cases := []struct {
		expected eventstore.ExpectedVersion
		wantErr  bool
		actual   int64
	}{
		{eventstore.NoStream, true, 2},
		{eventstore.Exactly(1), true, 2},
		{eventstore.Exactly(3), true, 2},
		{eventstore.Exactly(2), false, 0},
		{eventstore.StreamExists, false, 0},
		{eventstore.Any, false, 0},
	}
	version := int64(2)
	for _, c := range cases {
		res, err := s.Append(ctx, "order-1", c.expected, ev("Noted", `{}`))
		if c.wantErr {
			var ce *eventstore.ConflictError
			if !errors.Is(err, eventstore.ErrConflict) || !errors.As(err, &ce) {
				t.Fatalf("%s: want conflict, got %v", c.expected, err)
			}
			if ce.StreamID != "order-1" || ce.Expected != c.expected || ce.Actual != c.actual {
				t.Fatalf("%s: conflict %+v", c.expected, ce)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.expected, err)
		}
		version++
		if res.Version != version {
			t.Fatalf("%s: version %d, want %d", c.expected, res.Version, version)
		}
	}
	// StreamExists and Exactly(n) on a stream that does not exist.
	for _, exp := range []eventstore.ExpectedVersion{eventstore.StreamExists, eventstore.Exactly(1)} {
		_, err := s.Append(ctx, "order-2", exp, ev("Noted", `{}`))
		var ce *eventstore.ConflictError
		if !errors.As(err, &ce) || ce.Actual != 0 {
			t.Fatalf("%s on missing stream: %v", exp, err)
		}
	}
	if _, err := s.StreamVersion(ctx, "order-2"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("order-2 should not exist: %v", err)
	}
	// Any creates a stream.
	if res, err := s.Append(ctx, "order-3", eventstore.Any, ev("Noted", `{}`)); err != nil || res.Version != 1 {
		t.Fatalf("any on new stream: %+v %v", res, err)
	}
}

// Promise 1: 32 writers race with the same expected version; exactly one wins.
func TestConcurrentExactlyOneWins(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.Append(ctx, "acct-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		const writers = 32
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, writers)
		for i := range writers {
			wg.Go(func() {
				<-start
				_, errs[i] = s.Append(ctx, "acct-1", eventstore.Exactly(int64(round+1)),
					ev("Deposited", fmt.Sprintf(`{"writer":%d}`, i)))
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			var ce *eventstore.ConflictError
			switch {
			case err == nil:
				wins++
			case errors.As(err, &ce):
				if ce.Expected != eventstore.Exactly(int64(round+1)) || ce.Actual != int64(round+2) {
					t.Fatalf("round %d: conflict %+v", round, ce)
				}
			default:
				t.Fatalf("round %d: unexpected error %v", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, wins)
		}
	}
	if got := readStream(t, s, "acct-1"); len(got) != 6 {
		t.Fatalf("stream has %d events, want 6", len(got))
	}
}

// Promise 1: many concurrent Any appends to one stream leave gapless versions.
func TestConcurrentAnyGapless(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	const writers, appends = 16, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				n := 1 + (w+i)%3 // one to three events per append
				evs := make([]eventstore.NewEvent, n)
				for k := range evs {
					evs[k] = ev("Ticked", fmt.Sprintf(`{"w":%d,"i":%d,"k":%d}`, w, i, k))
				}
				if _, err := s.Append(ctx, "counter-1", eventstore.Any, evs...); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	got := readStream(t, s, "counter-1")
	if len(got) != total {
		t.Fatalf("read %d events, appended %d", len(got), total)
	}
	for i, e := range got {
		if e.Version != int64(i+1) {
			t.Fatalf("event %d has version %d: versions are not gapless", i, e.Version)
		}
	}
	// Events of one append are contiguous and in order.
	for i := 1; i < len(got); i++ {
		var a, b struct{ W, I, K int }
		mustJSON(t, got[i-1].Data, &a)
		mustJSON(t, got[i].Data, &b)
		if b.K > 0 && (a.W != b.W || a.I != b.I || a.K != b.K-1) {
			t.Fatalf("append split: %s then %s", got[i-1].Data, got[i].Data)
		}
	}
	if v, _ := s.StreamVersion(ctx, "counter-1"); v != int64(total) {
		t.Fatalf("stream version %d, want %d", v, total)
	}
}

func TestAppendTx(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	// Rolled back: nothing stays.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, tx, "cart-1", eventstore.NoStream, ev("Added", `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StreamVersion(ctx, "cart-1"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("after rollback: %v", err)
	}
	// Committed with another write; a conflict inside leaves tx usable.
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := s.AppendTx(ctx, tx, "cart-1", eventstore.NoStream, ev("Added", `{}`)); err != nil {
			return err
		}
		_, err := s.AppendTx(ctx, tx, "cart-1", eventstore.NoStream, ev("Added", `{}`))
		if !errors.Is(err, eventstore.ErrConflict) {
			return fmt.Errorf("want conflict inside tx, got %v", err)
		}
		res, err := s.AppendTx(ctx, tx, "cart-1", eventstore.Exactly(1), ev("Removed", `{}`))
		if err != nil || res.Version != 2 {
			return fmt.Errorf("second append in tx: %+v %v", res, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := readStream(t, s, "cart-1"); len(got) != 2 || got[1].Type != "Removed" {
		t.Fatalf("after commit: %+v", got)
	}
}

// Promise 5: bad input gets a clear, typed error and nothing is written.
func TestBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &eventstore.Config{MaxEventSize: 1000, MaxAppendEvents: 5})
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	good := ev("Placed", `{"ok":true}`)
	cases := []struct {
		name   string
		ctx    context.Context
		stream string
		exp    eventstore.ExpectedVersion
		events []eventstore.NewEvent
		field  string // InvalidEventError.Field, "" for other errors
		index  int
		target error
	}{
		{"empty stream", ctx, "", eventstore.Any, []eventstore.NewEvent{good}, "stream", -1, eventstore.ErrInvalidEvent},
		{"no events", ctx, "s-1", eventstore.Any, nil, "events", -1, eventstore.ErrInvalidEvent},
		{"too many events", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{good, good, good, good, good, good}, "events", -1, eventstore.ErrInvalidEvent},
		{"empty type", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{ev("", `{}`)}, "type", 0, eventstore.ErrInvalidEvent},
		{"invalid JSON in the last of three", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{good, good, ev("Placed", `{"a":`)}, "data", 2, eventstore.ErrInvalidEvent},
		{"empty data", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{good, {Type: "Placed"}}, "data", 1, eventstore.ErrInvalidEvent},
		{"oversized event", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{ev("Placed", `"`+strings.Repeat("x", 1000)+`"`)}, "size", 0, eventstore.ErrInvalidEvent},
		{"NUL in stream", ctx, "s-\x00", eventstore.Any, []eventstore.NewEvent{good}, "stream", -1, eventstore.ErrInvalidEvent},
		{"invalid UTF-8 in type", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{ev("P\xff", `{}`)}, "type", 0, eventstore.ErrInvalidEvent},
		{"invalid UTF-8 in JSON string", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{ev("Placed", "\"\xff\"")}, "data", 0, eventstore.ErrInvalidEvent},
		{"bad metadata key", ctx, "s-1", eventstore.Any, []eventstore.NewEvent{{Type: "Placed", Data: []byte(`{}`), Metadata: eventstore.Metadata{Values: map[string]string{"": "x"}}}}, "metadata", 0, eventstore.ErrInvalidEvent},
		{"negative expected version", ctx, "s-1", eventstore.ExpectedVersion(-7), []eventstore.NewEvent{good}, "expected version", -1, eventstore.ErrInvalidEvent},
		{"cancelled context", cancelled, "s-1", eventstore.Any, []eventstore.NewEvent{good}, "", 0, context.Canceled},
	}
	for _, c := range cases {
		_, err := s.Append(c.ctx, c.stream, c.exp, c.events...)
		if !errors.Is(err, c.target) {
			t.Fatalf("%s: got %v, want %v", c.name, err, c.target)
		}
		if c.field != "" {
			var ie *eventstore.InvalidEventError
			if !errors.As(err, &ie) || ie.Field != c.field || ie.Index != c.index {
				t.Fatalf("%s: got %#v, want field %q index %d", c.name, err, c.field, c.index)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("%s: message %q does not name %q", c.name, err, c.field)
			}
		}
	}
	// A validator's refusal of the last event writes nothing either.
	sv, _ := newStore(t, &eventstore.Config{Validator: refuseType("Bad")})
	_, err := sv.Append(ctx, "s-1", eventstore.Any, good, good, ev("Bad", `{}`))
	if !errors.Is(err, eventstore.ErrInvalidEvent) || !strings.Contains(err.Error(), "event 2") {
		t.Fatalf("validator refusal: %v", err)
	}
	for _, st := range []*eventstore.Store{s, sv} {
		if _, err := st.StreamVersion(ctx, "s-1"); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("something was written: %v", err)
		}
		page, err := st.ReadAll(ctx, eventstore.Position{}, 10)
		if err != nil || len(page.Events) != 0 {
			t.Fatalf("log not empty: %d events, %v", len(page.Events), err)
		}
	}
}

type refuseType string

func (r refuseType) Validate(ev eventstore.NewEvent) error {
	if ev.Type == string(r) {
		return fmt.Errorf("type %q is refused", ev.Type)
	}
	return nil
}

func TestDuplicateEventID(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	id := uuid.New()
	e := eventstore.NewEvent{ID: id, Type: "Placed", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, "order-1", eventstore.NoStream, e); err != nil {
		t.Fatal(err)
	}
	// A retried command with the same event ID, on the same or another stream.
	for _, stream := range []string{"order-1", "order-2"} {
		_, err := s.Append(ctx, stream, eventstore.Any, e)
		var de *eventstore.DuplicateEventError
		if !errors.Is(err, eventstore.ErrDuplicateEvent) || !errors.As(err, &de) || de.ID != id {
			t.Fatalf("%s: want duplicate of %s, got %v", stream, id, err)
		}
	}
	// Twice in one append.
	other := eventstore.NewEvent{ID: uuid.New(), Type: "Placed", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, "order-3", eventstore.Any, other, other); !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("duplicate within append: %v", err)
	}
	if got := readStream(t, s, "order-1"); len(got) != 1 {
		t.Fatalf("order-1 has %d events", len(got))
	}
	for _, stream := range []string{"order-2", "order-3"} {
		if _, err := s.StreamVersion(ctx, stream); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("%s was written: %v", stream, err)
		}
	}
}

// Stream IDs, types and data are stored verbatim, however hostile.
func TestVerbatim(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	streams := []string{`o'; DROP TABLE events; --`, `"quoted"-1`, `ünï-cødé-🚀`, `a\b-$1`}
	data := []string{` { "b" : 2 ,"a":1 } `, `"\u0000 nul escape"`, `[1e400, 0.10]`, "{\n\t\"k\":\"v\"\n}"}
	meta := eventstore.Metadata{CorrelationID: "c'1", CausationID: `"c2"`, Values: map[string]string{"traceparent": "00-abc", "it's": `"x"`}}
	for i, stream := range streams {
		e := eventstore.NewEvent{Type: `Type'"; SELECT 1;` + stream, Data: []byte(data[i]), Metadata: meta}
		if _, err := s.Append(ctx, stream, eventstore.NoStream, e); err != nil {
			t.Fatalf("%q: %v", stream, err)
		}
		got := readStream(t, s, stream)
		if len(got) != 1 {
			t.Fatalf("%q: %d events", stream, len(got))
		}
		g := got[0]
		if g.StreamID != stream || g.Type != e.Type || string(g.Data) != data[i] {
			t.Fatalf("not verbatim: %q %q %q", g.StreamID, g.Type, g.Data)
		}
		if g.Metadata.CorrelationID != meta.CorrelationID || g.Metadata.CausationID != meta.CausationID ||
			len(g.Metadata.Values) != 2 || g.Metadata.Values["it's"] != `"x"` {
			t.Fatalf("metadata: %+v", g.Metadata)
		}
		if g.SchemaVersion != 1 || g.ID.Version() != 7 {
			t.Fatalf("defaults: schema version %d, id version %d", g.SchemaVersion, g.ID.Version())
		}
	}
}

func TestReadStream(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	for i := range 10 {
		if _, err := s.Append(ctx, "doc-1", eventstore.Exactly(int64(i)), ev("Edited", fmt.Sprintf(`{"n":%d}`, i+1))); err != nil {
			t.Fatal(err)
		}
	}
	var versions []int64
	for e, err := range s.ReadStream(ctx, "doc-1", 4) {
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, e.Version)
		if e.Version == 7 {
			break // releases the connection
		}
	}
	if fmt.Sprint(versions) != "[4 5 6 7]" {
		t.Fatalf("versions %v", versions)
	}
	// Past the end of an existing stream: nothing, no error.
	for _, err := range s.ReadStream(ctx, "doc-1", 11) {
		t.Fatalf("past the end: %v", err)
	}
	for _, from := range []int64{0, 5} {
		n := 0
		for _, err := range s.ReadStream(ctx, "doc-404", from) {
			n++
			if !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Fatalf("missing stream: %v", err)
			}
		}
		if n != 1 {
			t.Fatalf("missing stream yielded %d times", n)
		}
	}
	// The pool is not leaking connections held by abandoned iterations.
	if st := s.Pool().Stat(); st.AcquiredConns() != 0 {
		t.Fatalf("%d connections still acquired", st.AcquiredConns())
	}
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.LoadSnapshot(ctx, "order-1"); !errors.Is(err, eventstore.ErrSnapshotNotFound) {
		t.Fatalf("want not found, got %v", err)
	}
	// A snapshot is of a version the stream has (migration 0009).
	for range 20 {
		if _, err := s.Append(ctx, "order-1", eventstore.Any, ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	save := func(v int64, data string) {
		t.Helper()
		if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1", Version: v, SchemaVersion: 3, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	save(10, "ten")
	save(20, "twenty")
	save(15, "fifteen") // older: ignored
	snap, err := s.LoadSnapshot(ctx, "order-1")
	if err != nil || snap.Version != 20 || string(snap.Data) != "twenty" || snap.SchemaVersion != 3 || snap.CreatedAt.IsZero() {
		t.Fatalf("%+v %v", snap, err)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1"}); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("empty snapshot: %v", err)
	}
}

func TestPositionString(t *testing.T) {
	for _, p := range []eventstore.Position{{}, {TxID: 1, Seq: 2}, {TxID: 1 << 40, Seq: 1 << 50}} {
		q, err := eventstore.ParsePosition(p.String())
		if err != nil || q != p {
			t.Fatalf("%v: %v %v", p, q, err)
		}
	}
	for _, bad := range []string{"x", "1/", "/2", "1/-2", "1-2"} {
		if _, err := eventstore.ParsePosition(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
	if !(eventstore.Position{TxID: 1, Seq: 9}).Less(eventstore.Position{TxID: 2, Seq: 1}) {
		t.Fatal("order is by transaction first")
	}
}

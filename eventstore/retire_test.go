package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// Tombstone: appends racing with it either landed before it (and are in
// the stream, versions gapless) or are refused with a *RetiredError; after
// it every kind of append is refused and nothing is written; the events
// stay readable.
func TestTombstoneRefusesEveryLaterAppend(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.Append(ctx, "acct-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 6 {
		wg.Go(func() {
			<-start
			for range 30 {
				_, err := s.Append(ctx, "acct-1", eventstore.Any, ev("Deposited", `{}`))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, eventstore.ErrRetired):
					refused.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	close(start)
	time.Sleep(20 * time.Millisecond)
	if err := s.Tombstone(ctx, "acct-1"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	events := readStream(t, s, "acct-1")
	if int64(len(events)) != 1+ok.Load() || refused.Load() == 0 {
		t.Fatalf("%d events in the stream, %d appends succeeded, %d refused", len(events), ok.Load(), refused.Load())
	}
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Fatalf("version %d at index %d", e.Version, i)
		}
	}
	v := int64(len(events))
	for _, exp := range []eventstore.ExpectedVersion{eventstore.Any, eventstore.StreamExists, eventstore.Exactly(v)} {
		var re *eventstore.RetiredError
		if _, err := s.Append(ctx, "acct-1", exp, ev("Deposited", `{}`), ev("Deposited", `{}`)); !errors.As(err, &re) || re.State != "tombstoned" {
			t.Fatalf("append (%s) to a tombstoned stream: %v", exp, err)
		}
	}
	if _, err := s.Append(ctx, "acct-1", eventstore.NoStream, ev("Deposited", `{}`)); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("NoStream append to a tombstoned stream: %v", err)
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := s.AppendTx(ctx, tx, "acct-1", eventstore.Any, ev("Deposited", `{}`))
		return err
	})
	if !errors.Is(err, eventstore.ErrRetired) {
		t.Fatalf("AppendTx to a tombstoned stream: %v", err)
	}
	if got := len(readStream(t, s, "acct-1")); int64(got) != v {
		t.Fatalf("refused appends wrote: %d events, had %d", got, v)
	}
	if err := s.Tombstone(ctx, "acct-1"); err != nil {
		t.Fatalf("tombstoning again: %v", err)
	}
	if err := s.Tombstone(ctx, "nope"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("tombstone of no stream: %v", err)
	}
	if r, err := s.Retirement(ctx); err != nil || r.Tombstoned != 1 {
		t.Fatalf("Retirement = %+v, %v", r, err)
	}
}

// Archive and restore under a running subscription and appenders: the
// subscription handles every event of the streams never archived exactly
// once in order; of an archived stream it handled a gapless prefix, once
// each; archived events leave ReadStream and ReadAll; appends to an
// archived stream are refused; after Restore the stream reads whole again
// and takes appends.
func TestArchiveUnderSubscriptionAndAppenders(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	seen := pgx.Identifier{db.Schema, "seen"}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+seen+` (event_id uuid PRIMARY KEY, stream_id text, version bigint)`); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "all", Partitions: 2, BatchSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, sub, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		for _, e := range events {
			if _, err := tx.Exec(ctx, `INSERT INTO `+seen+` VALUES ($1, $2, $3)`, e.ID, e.StreamID, e.Version); err != nil {
				return err
			}
		}
		return nil
	})
	defer func() { _ = stop() }()
	const streams = 8
	actx, stopAppend := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; actx.Err() == nil; i++ {
				stream := fmt.Sprintf("acct-%d", (i+w)%streams)
				_, err := s.Append(actx, stream, eventstore.Any, ev("Tick", `{}`))
				if err != nil && !errors.Is(err, eventstore.ErrRetired) && actx.Err() == nil {
					t.Error(err)
					return
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	for _, id := range []string{"acct-0", "acct-1", "acct-2"} {
		if err := s.Archive(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stopAppend()
	wg.Wait()
	if _, err := s.Append(ctx, "acct-0", eventstore.Any, ev("Tick", `{}`)); !errors.Is(err, eventstore.ErrRetired) {
		t.Fatalf("append to an archived stream: %v", err)
	}
	for e, err := range s.ReadStream(ctx, "acct-1", 0) {
		if err == nil {
			t.Fatalf("an archived stream reads event %d", e.Version)
		}
		break
	}
	// Wait until the subscription has read the whole log.
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.Append(ctx, "acct-7", eventstore.Any, ev("Tick", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = head
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := s.WaitFor(wctx, "all", last.Position); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "every partition past the log's end", 90*time.Second, func() bool {
		var behind int
		_ = db.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.events e WHERE NOT EXISTS (SELECT 1 FROM %s s WHERE s.event_id = e.event_id)`,
			pgx.Identifier{db.Schema}.Sanitize(), seen)).Scan(&behind)
		return behind == 0
	})
	for k := range streams {
		id := fmt.Sprintf("acct-%d", k)
		var n, maxV int64
		if err := db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(max(version), 0) FROM `+seen+` WHERE stream_id = $1`, id).Scan(&n, &maxV); err != nil {
			t.Fatal(err)
		}
		if n != maxV {
			t.Fatalf("%s: the subscription handled %d events up to version %d: a gap", id, n, maxV)
		}
		if k >= 3 {
			if v, _ := s.StreamVersion(ctx, id); v != maxV {
				t.Fatalf("%s (never archived): handled up to %d of %d", id, maxV, v)
			}
		}
	}
	// Page through the log: no archived event.
	var after eventstore.Position
	for {
		page, err := s.ReadAll(ctx, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if e.StreamID == "acct-0" || e.StreamID == "acct-1" || e.StreamID == "acct-2" {
				t.Fatalf("ReadAll returned archived event %s v%d", e.StreamID, e.Version)
			}
		}
		after = page.Next
		if page.AtEnd {
			break
		}
	}
	r, err := s.Retirement(ctx)
	if err != nil || r.Archived != 3 || r.ArchivedEvents == 0 {
		t.Fatalf("Retirement = %+v, %v", r, err)
	}
	v, _ := s.StreamVersion(ctx, "acct-0")
	if err := s.Restore(ctx, "acct-0"); err != nil {
		t.Fatal(err)
	}
	if got := len(readStream(t, s, "acct-0")); int64(got) != v {
		t.Fatalf("restored stream reads %d events, version %d", got, v)
	}
	if res, err := s.Append(ctx, "acct-0", eventstore.Exactly(v), ev("Tick", `{}`)); err != nil || res.Version != v+1 {
		t.Fatalf("append after restore: %+v %v", res, err)
	}
	if err := s.Restore(ctx, "acct-0"); err != nil {
		t.Fatalf("restoring a live stream: %v", err)
	}
}

// TruncateStream needs a snapshot covering what it deletes, keeps the
// last event, and leaves the stream taking appends.
func TestTruncateStreamAfterSnapshot(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	for range 10 {
		if _, err := s.Append(ctx, "acct-1", eventstore.Any, ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TruncateStream(ctx, "acct-1", 5); !errors.Is(err, eventstore.ErrNoSnapshot) {
		t.Fatalf("truncate without a snapshot: %v", err)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "acct-1", Version: 6, SchemaVersion: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int64{0, -1, 11} {
		if err := s.TruncateStream(ctx, "acct-1", bad); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Fatalf("truncate before %d: %v", bad, err)
		}
	}
	if err := s.TruncateStream(ctx, "acct-1", 8); !errors.Is(err, eventstore.ErrNoSnapshot) {
		t.Fatalf("truncate past the snapshot: %v", err)
	}
	if err := s.TruncateStream(ctx, "acct-1", 7); err != nil {
		t.Fatal(err)
	}
	got := readStream(t, s, "acct-1")
	if len(got) != 4 || got[0].Version != 7 {
		t.Fatalf("after truncating before 7: %d events from version %d", len(got), got[0].Version)
	}
	if res, err := s.Append(ctx, "acct-1", eventstore.Exactly(10), ev("Tick", `{}`)); err != nil || res.Version != 11 {
		t.Fatalf("append after truncate: %+v %v", res, err)
	}
	if st, err := s.StreamRetirement(ctx, "acct-1"); err != nil || st.TruncatedBefore != 7 {
		t.Fatalf("StreamRetirement = %+v, %v", st, err)
	}
}

// The application role of migrations.GrantApplication can neither retire
// a stream, nor bring an archived one back, nor write archived events
// (which Restore puts back into the log as they are); it can still
// append to live streams and wait for its own writes.
func TestRetiringNeedsTheOwner(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	owner := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	appPool := db.AppPool(t)
	app := eventstore.New(appPool, &eventstore.Config{Schema: db.Schema})
	for _, id := range []string{"acct-1", "acct-2"} {
		if _, err := app.Append(ctx, id, eventstore.NoStream, ev("Opened", `{}`), ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := owner.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "acct-1", Version: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := owner.Archive(ctx, "acct-2"); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"tombstone": app.Tombstone(ctx, "acct-1"),
		"archive":   app.Archive(ctx, "acct-1"),
		"truncate":  app.TruncateStream(ctx, "acct-1", 2),
		"restore":   app.Restore(ctx, "acct-2"),
	} {
		if err == nil {
			t.Fatalf("the application role could %s a stream", what)
		}
	}
	table := pgx.Identifier{db.Schema, "archived_events"}.Sanitize()
	for _, q := range []string{`UPDATE ` + table + ` SET transaction_id = 1`, `DELETE FROM ` + table,
		`INSERT INTO ` + table + ` SELECT 999999, 'acct-2', 3, e FROM ` + pgx.Identifier{db.Schema, "events"}.Sanitize() + ` e LIMIT 1`} {
		if _, err := appPool.Exec(ctx, q); err == nil {
			t.Fatalf("the application role could run %s", q)
		}
	}
	if r, err := owner.StreamRetirement(ctx, "acct-1"); err != nil || !r.TombstonedAt.IsZero() || !r.ArchivedAt.IsZero() || r.TruncatedBefore != 0 {
		t.Fatalf("acct-1 after the application role's attempts: %+v %v", r, err)
	}
	if _, err := app.Append(ctx, "acct-1", eventstore.Exactly(2), ev("Tick", `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Append(ctx, "acct-2", eventstore.Any, ev("Tick", `{}`)); !errors.Is(err, eventstore.ErrRetired) {
		t.Fatalf("app role append to an archived stream: %v", err)
	}
}

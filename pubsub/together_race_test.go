package pubsub_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// cutPublisher returns a Publisher whose pool goes through a fault proxy,
// and the tracer that arms a cut of the next COMMIT.
func cutPublisher(t *testing.T, db *pgtest.DB, cfg *pubsub.PublisherConfig) (*pubsub.Publisher, *commitCutter) {
	t.Helper()
	pcfg, p, err := faultproxy.PoolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.SetDropCancels(true)
	cutter := &commitCutter{p: p}
	pcfg.ConnConfig.Tracer = cutter
	pool, err := pgxpool.NewWithConfig(ctxT(t), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub, err := pubsub.NewPublisher(eventstore.New(pool, &eventstore.Config{Schema: db.Schema, Logger: quiet}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub, cutter
}

// armCommitCut makes the next COMMIT run on the server and its answer be
// lost: the transaction surely committed.
func armCommitCut(c *commitCutter) {
	c.cut = func() *faultproxy.Cut {
		c.cut = nil
		return &faultproxy.Cut{Types: "Q", Upstream: faultproxy.UpstreamAfterReply, Times: 1}
	}
}

// publishCommittedLostAnswer publishes msgs with cfg, the answer to the
// COMMIT lost after the server committed, and fails unless Publish
// returns nil with want events stored.
func publishCommittedLostAnswer(t *testing.T, cfg *pubsub.PublisherConfig, want int, msgs ...*message.Message) {
	t.Helper()
	db := pgtest.New(t)
	pub, cutter := cutPublisher(t, db, cfg)
	armCommitCut(cutter)
	err := pub.Publish("lost-commit-dup", msgs...)
	n := storedCount(t, db)
	if n != want {
		t.Fatalf("%d events stored, want %d (the repeated UUID once)", n, want)
	}
	if err != nil {
		t.Fatalf("Publish = %v, but its transaction committed (%d events stored)", err, n)
	}
}

// TestPublishLostCommitRepeatedUUIDAcrossStreams: a Publish across streams
// whose messages repeat a UUID (stored once, at its first place, as the
// Publish doc says) loses the answer to its COMMIT after the server
// committed. The transaction committed, so Publish must return nil.
func TestPublishLostCommitRepeatedUUIDAcrossStreams(t *testing.T) {
	t.Parallel()
	a, b, c := keyed("a", `1`), keyed("b", `2`), keyed("c", `3`)
	b.UUID = a.UUID // the same message, routed to another stream too
	publishCommittedLostAnswer(t, &pubsub.PublisherConfig{PartitionKey: byKey}, 2, a, b, c)
}

// TestPublishLostCommitRepeatedUUIDOverMaxBatch: the same with one stream
// and more than MaxBatch messages, one UUID repeated.
func TestPublishLostCommitRepeatedUUIDOverMaxBatch(t *testing.T) {
	t.Parallel()
	msgs := []*message.Message{keyed("", `1`), keyed("", `2`), keyed("", `3`)}
	msgs[2].UUID = msgs[0].UUID
	publishCommittedLostAnswer(t, &pubsub.PublisherConfig{MaxBatch: 2}, 2, msgs...)
}

// TestCloseDuringPublishAcrossStreams: Close while a Publish across streams is
// under way: nil with every message stored, or ErrClosed with none.
func TestCloseDuringPublishAcrossStreams(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	pub, _ := cutPublisher(t, db, &pubsub.PublisherConfig{PartitionKey: byKey})
	errs := make(chan error, 1)
	go func() {
		msgs := []*message.Message{keyed("a", `1`), keyed("b", `2`)}
		errs <- pub.Publish("close-together", msgs...)
	}()
	time.Sleep(time.Millisecond)
	_ = pub.Close()
	err := <-errs
	n := storedCount(t, db)
	if (err == nil) != (n == 2) || (err != nil && n != 0) {
		t.Fatalf("Publish = %v with %d events stored", err, n)
	}
	if err != nil && !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Publish = %v, want ErrClosed", err)
	}
}

// TestPublishAcrossStreamsRacesOtherPublishers: a Publish across streams takes
// its transaction ID at its first stream and writes the next ones later;
// meanwhile other Publish calls to those streams commit. Each Publish
// without a tx is the Publisher's own transaction: it must not fail with
// eventstore.ErrOutOfOrder (an error the caller can do nothing about but
// call Publish again).
func TestPublishAcrossStreamsRacesOtherPublishers(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, err := pubsub.NewPublisher(s, &pubsub.PublisherConfig{PartitionKey: byKey})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const rounds = 50
	errs := make(chan error, 3*rounds)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range rounds {
			errs <- pub.Publish("race", keyed("b", fmt.Sprint(i)))
		}
	})
	wg.Go(func() { // the other way round: b first
		for i := range rounds {
			errs <- pub.Publish("race", keyed("b", fmt.Sprint(i)), keyed("a", fmt.Sprint(i)))
		}
	})
	for i := range rounds {
		errs <- pub.Publish("race", keyed("a", fmt.Sprint(i)), keyed("b", fmt.Sprint(i)))
	}
	wg.Wait()
	close(errs)
	failed := 0
	var first error
	for err := range errs {
		if err != nil {
			failed++
			if first == nil || !errors.Is(err, eventstore.ErrOutOfOrder) {
				first = err
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d Publish calls failed; first: %v (ErrOutOfOrder: %v)", failed, 3*rounds, first, errors.Is(first, eventstore.ErrOutOfOrder))
	}
}

// TestPublishMixedFailureLeavesTxClean: one Publish, one message in the
// caller's tx, the others (several streams) without; one of those the
// store refuses. Publish returns an error, so none of its messages may
// be published: the caller's tx, committed, must not carry the first
// message either.
func TestPublishMixedFailureLeavesTxClean(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, MaxEventSize: 1000})
	pub, err := pubsub.NewPublisher(store, &pubsub.PublisherConfig{PartitionKey: byKey})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := ctxT(t)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	inTx := keyed("a", `1`)
	inTx.SetContext(pubsub.ContextWithTx(ctx, tx))
	huge := `"` + strings.Repeat("x", 2000) + `"`
	err = pub.Publish("mixed", inTx, keyed("b", `2`), keyed("c", huge))
	if err == nil {
		t.Fatal("Publish of a message the store refuses = nil")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := storedCount(t, db); n != 0 {
		t.Fatalf("Publish = %v, yet %d of its messages are stored once the caller's tx committed", err, n)
	}
}

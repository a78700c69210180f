package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// byKey partitions a topic by the message's "key" metadata.
func byKey(_ string, msg *message.Message) string { return msg.Metadata.Get("key") }

func keyed(key, payload string) *message.Message {
	m := message.NewMessage(uuid.NewString(), []byte(payload))
	m.Metadata.Set("key", key)
	return m
}

// storedCount counts the events of the schema's log, read directly.
func storedCount(t *testing.T, db *pgtest.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "events"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPublishAcrossStreamsAllOrNothing: a Publish whose messages go to
// several streams (PartitionKey), or to one stream in more than MaxBatch
// messages, stores all of them or none. The last message is one the store
// refuses (too large): the others must not be stored either.
func TestPublishAcrossStreamsAllOrNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, MaxEventSize: 1000})
	huge := `"` + strings.Repeat("x", 2000) + `"`
	cases := []struct {
		name string
		cfg  pubsub.PublisherConfig
		msgs []*message.Message
	}{
		{"two streams", pubsub.PublisherConfig{PartitionKey: byKey},
			[]*message.Message{keyed("a", `1`), keyed("b", huge)}},
		{"three streams, the bad one in the middle", pubsub.PublisherConfig{PartitionKey: byKey},
			[]*message.Message{keyed("a", `1`), keyed("b", huge), keyed("c", `3`)}},
		{"one stream, more than MaxBatch", pubsub.PublisherConfig{MaxBatch: 2},
			[]*message.Message{keyed("", `1`), keyed("", `2`), keyed("", `3`), keyed("", `4`), keyed("", huge)}},
	}
	for _, c := range cases {
		pub, err := pubsub.NewPublisher(store, &c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = pub.Publish("all-or-nothing", c.msgs...)
		var bad *eventstore.InvalidEventError
		if !errors.As(err, &bad) {
			t.Fatalf("%s: Publish = %v, want an *eventstore.InvalidEventError", c.name, err)
		}
		if n := storedCount(t, db); n != 0 {
			t.Fatalf("%s: %d events stored by a Publish that returned %v; want none", c.name, n, err)
		}
		_ = pub.Close()
	}
	// And with every message valid, all are stored, each once.
	pub, err := pubsub.NewPublisher(store, &pubsub.PublisherConfig{PartitionKey: byKey, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	msgs := []*message.Message{keyed("a", `1`), keyed("b", `2`), keyed("a", `3`), keyed("a", `4`), keyed("c", `5`)}
	if err := pub.Publish("all-or-nothing", msgs...); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("all-or-nothing", msgs...); err != nil { // a retry: stored once
		t.Fatal(err)
	}
	if n := storedCount(t, db); n != len(msgs) {
		t.Fatalf("%d events stored, want %d", n, len(msgs))
	}
}

// commitCutter is a pgx tracer that arms a one-time cut of the next
// simple query (COMMIT itself) when a transaction commits.
type commitCutter struct {
	p   *faultproxy.Proxy
	cut func() *faultproxy.Cut // nil: do not cut
}

func (c *commitCutter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.EqualFold(data.SQL, "commit") && c.cut != nil {
		c.p.SetCut(c.cut())
	}
	return ctx
}

func (c *commitCutter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestPublishAcrossStreamsLostCommit: the connection of a Publish across
// streams is lost while its transaction commits, in each way a connection
// can be lost then (the server's side closed right after COMMIT was
// forwarded; closed after the server answered, the answer discarded; held
// open with the answer discarded). An error from Publish must mean that
// nothing was stored: Publish returns nil with every message stored once,
// or an error with none of them stored, never an error after the
// transaction committed.
func TestPublishAcrossStreamsLostCommit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg, p, err := faultproxy.PoolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetDropCancels(true)
	cutter := &commitCutter{p: p}
	cfg.ConnConfig.Tracer = cutter
	ctx := ctxT(t)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub, err := pubsub.NewPublisher(eventstore.New(pool, &eventstore.Config{Schema: db.Schema, Logger: quiet}), &pubsub.PublisherConfig{PartitionKey: byKey})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	modes := []faultproxy.Upstream{faultproxy.UpstreamClose, faultproxy.UpstreamAfterReply, faultproxy.UpstreamHold}
	want, committed := 0, 0
	for round := range 3 {
		for _, mode := range modes {
			cutter.cut = func() *faultproxy.Cut {
				cutter.cut = nil // the first COMMIT only, not the resolution's
				return &faultproxy.Cut{Types: "Q", Upstream: mode, Times: 1}
			}
			msgs := []*message.Message{keyed("a", fmt.Sprint(round)), keyed("b", `2`), keyed("c", `3`)}
			before := p.Cuts()
			err := pub.Publish("lost-commit", msgs...)
			if p.Cuts() != before+1 {
				t.Fatalf("round %d, upstream %d: the COMMIT was not cut", round, mode)
			}
			n := storedCount(t, db)
			switch {
			case err == nil:
				want += len(msgs)
				if n != want {
					t.Fatalf("round %d, upstream %d: Publish = nil with %d events stored, want %d", round, mode, n, want)
				}
				committed++
			case errors.Is(err, eventstore.ErrAmbiguous):
				t.Fatalf("round %d, upstream %d: Publish = %v; the outcome could be learned", round, mode, err)
			case n != want:
				t.Fatalf("round %d, upstream %d: Publish = %v, but the transaction committed (%d events stored, %d before)", round, mode, err, n, want)
			}
		}
	}
	if committed == 0 {
		t.Fatal("no Publish committed: the cuts came before the server could commit")
	}
}

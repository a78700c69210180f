package pubsub

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// blockable is a Publisher on its own pool, whose appends a test can block
// with a lock held in another transaction, and whose queues it can watch.
type blockable struct {
	t     *testing.T
	db    *pgtest.DB
	store *eventstore.Store
	pub   *Publisher
	app   string // the application_name of the Publisher's connections
	lock  pgx.Tx
}

func newBlockable(t *testing.T) *blockable {
	t.Helper()
	db := pgtest.New(t)
	cfg := pgtest.Config(t)
	app := "pub_" + db.Schema
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	pub, err := NewPublisher(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pub.Close()
		pool.Close()
	})
	return &blockable{t: t, db: db, store: store, pub: pub, app: app}
}

// lockStreams blocks every append until unlock (or the end of the test).
func (b *blockable) lockStreams() {
	b.t.Helper()
	ctx := context.Background()
	tx, err := b.db.Pool.Begin(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `LOCK TABLE `+b.store.Table("streams")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		b.t.Fatal(err)
	}
	b.lock = tx
}

func (b *blockable) unlock() {
	b.t.Helper()
	if err := b.lock.Rollback(context.Background()); err != nil {
		b.t.Fatal(err)
	}
}

// waiting returns the Publisher's backends that wait for a lock.
func (b *blockable) waiting() []int32 {
	b.t.Helper()
	rows, _ := b.db.Pool.Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, b.app)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.t.Fatal(err)
	}
	return pids
}

// backendGone reports whether the server process pid has ended.
func (b *blockable) backendGone(pid int32) bool {
	b.t.Helper()
	var n int
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n); err != nil {
		b.t.Fatal(err)
	}
	return n == 0
}

// pending is how many Publish calls wait in the queue of stream.
func (b *blockable) pending(stream string) int {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	if q, ok := b.pub.queues[stream]; ok {
		return len(q.pending)
	}
	return 0
}

// stored returns the UUIDs of the messages stored in topic, in order.
func (b *blockable) stored(topic string) []string {
	b.t.Helper()
	var ids []string
	for e, err := range b.store.ReadStream(context.Background(), StreamID(DefaultPrefix, topic, ""), 0) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			break
		}
		if err != nil {
			b.t.Fatal(err)
		}
		ids = append(ids, e.Metadata.Values[UUIDKey])
	}
	return ids
}

func publishAsync(p *Publisher, topic string, msgs ...*message.Message) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.Publish(topic, msgs...) }()
	return ch
}

// returned waits for a Publish (or Close) started with publishAsync,
// failing the test if it has not returned within d.
func returned(t *testing.T, what string, ch <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
		return nil
	}
}

func msgWith(ctx context.Context, id string) *message.Message {
	m := message.NewMessage(id, []byte(`"`+id+`"`))
	m.SetContext(ctx)
	return m
}

// A UUID repeated within one Publish is stored once, and every other
// message of the call is stored too, with or without a tx.
func TestPublishRepeatedUUID(t *testing.T) {
	t.Parallel()
	b := newBlockable(t)
	bg := context.Background()
	const topic = "repeats"
	if err := b.pub.Publish(topic, msgWith(bg, "m"), msgWith(bg, "m"), msgWith(bg, "other")); err != nil {
		t.Fatal(err)
	}
	if got := b.stored(topic); !slices.Equal(got, []string{"m", "other"}) {
		t.Fatalf("stored %v, want [m other]", got)
	}
	// A repeat, a stored message and new ones together.
	if err := b.pub.Publish(topic, msgWith(bg, "x"), msgWith(bg, "m"), msgWith(bg, "y"), msgWith(bg, "x")); err != nil {
		t.Fatal(err)
	}
	if got := b.stored(topic); !slices.Equal(got, []string{"m", "other", "x", "y"}) {
		t.Fatalf("stored %v, want [m other x y]", got)
	}

	// In the caller's tx.
	tx, err := b.db.Pool.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(bg) }()
	txCtx := ContextWithTx(bg, tx)
	if err := b.pub.Publish(topic, msgWith(txCtx, "t1"), msgWith(txCtx, "t1"), msgWith(txCtx, "t2"), msgWith(txCtx, "y")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(bg); err != nil {
		t.Fatal(err)
	}
	if got := b.stored(topic); !slices.Equal(got, []string{"m", "other", "x", "y", "t1", "t2"}) {
		t.Fatalf("stored %v, want [m other x y t1 t2]", got)
	}
}

// Concurrent Publish calls of one UUID coalesced into one append both
// succeed, the message is stored once, and nothing else is lost.
func TestCoalescedPublishesOfOneUUID(t *testing.T) {
	t.Parallel()
	b := newBlockable(t)
	bg := context.Background()
	const topic = "coalesced"
	stream := StreamID(DefaultPrefix, topic, "")
	b.lockStreams()
	first := publishAsync(b.pub, topic, msgWith(bg, "first"))
	pgtest.WaitFor(t, "the first append to wait for the lock", 30*time.Second, func() bool { return len(b.waiting()) == 1 })
	one := publishAsync(b.pub, topic, msgWith(bg, "m"))
	pgtest.WaitFor(t, "the second call to queue", 30*time.Second, func() bool { return b.pending(stream) == 1 })
	two := publishAsync(b.pub, topic, msgWith(bg, "m"), msgWith(bg, "other"))
	pgtest.WaitFor(t, "the third call to queue", 30*time.Second, func() bool { return b.pending(stream) == 2 })
	b.unlock()
	for i, ch := range []<-chan error{first, one, two} {
		if err := returned(t, "Publish", ch, 30*time.Second); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if got := b.stored(topic); !slices.Equal(got, []string{"first", "m", "other"}) {
		t.Fatalf("stored %v, want [first m other]", got)
	}
}

// A Publish whose message context ends returns at once, whether it waits
// for its turn or its append waits for the database, and what it
// published is stored exactly when it returned nil.
func TestPublishGivesUpWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	b := newBlockable(t)
	bg := context.Background()
	const topic = "gives-up"
	const bound = 5 * time.Second
	stream := StreamID(DefaultPrefix, topic, "")
	b.lockStreams()

	leadCtx, cancelLead := context.WithCancel(bg)
	defer cancelLead()
	lead := publishAsync(b.pub, topic, msgWith(leadCtx, "lead"))
	pgtest.WaitFor(t, "the first append to wait for the lock", 30*time.Second, func() bool { return len(b.waiting()) == 1 })
	leadPID := b.waiting()[0]
	queuedCtx, cancelQueued := context.WithCancel(bg)
	defer cancelQueued()
	queued := publishAsync(b.pub, topic, msgWith(queuedCtx, "queued"))
	pgtest.WaitFor(t, "a call to queue", 30*time.Second, func() bool { return b.pending(stream) == 1 })
	patient := publishAsync(b.pub, topic, msgWith(bg, "patient"))
	pgtest.WaitFor(t, "another call to queue", 30*time.Second, func() bool { return b.pending(stream) == 2 })
	deadlineCtx, cancelDeadline := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancelDeadline()
	deadlined := publishAsync(b.pub, topic, msgWith(deadlineCtx, "deadlined"))

	if err := returned(t, "a queued Publish past its deadline", deadlined, bound); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadlined publish: %v, want context.DeadlineExceeded", err)
	}
	cancelQueued()
	if err := returned(t, "a cancelled queued Publish", queued, bound); !errors.Is(err, context.Canceled) {
		t.Fatalf("queued publish: %v, want context.Canceled", err)
	}
	done, cancelDone := context.WithCancel(bg)
	cancelDone()
	if err := returned(t, "a Publish with a cancelled context", publishAsync(b.pub, topic, msgWith(done, "late")), bound); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with a cancelled context: %v", err)
	}
	cancelLead()
	if err := returned(t, "a cancelled Publish whose append waits for the database", lead, bound); !errors.Is(err, context.Canceled) {
		t.Fatalf("leading publish: %v, want context.Canceled", err)
	}
	select {
	case err := <-patient:
		t.Fatalf("a publish returned (%v) while the database is blocked", err)
	default:
	}
	// pgx gives the cancelled append's connection up with a cancel
	// request: its statement ends on the server without writing. Were it
	// still waiting, it would write once the lock is released, and Publish
	// would have returned an error for a stored message.
	pgtest.WaitFor(t, "the cancelled append's backend to end", 30*time.Second, func() bool { return b.backendGone(leadPID) })
	b.unlock()
	if err := returned(t, "a patient Publish", patient, 30*time.Second); err != nil {
		t.Fatalf("patient publish: %v", err)
	}
	if got := b.stored(topic); !slices.Equal(got, []string{"patient"}) {
		t.Fatalf("stored %v, want only [patient]: the others returned errors", got)
	}
}

// Close returns at once while appends wait for the database, ending every
// Publish under way with ErrClosed, and nothing of theirs is stored.
func TestCloseEndsBlockedPublishes(t *testing.T) {
	t.Parallel()
	b := newBlockable(t)
	bg := context.Background()
	const topic = "closing"
	const bound = 5 * time.Second
	stream := StreamID(DefaultPrefix, topic, "")
	b.lockStreams()

	lead := publishAsync(b.pub, topic, msgWith(bg, "lead"))
	pgtest.WaitFor(t, "the first append to wait for the lock", 30*time.Second, func() bool { return len(b.waiting()) == 1 })
	leadPID := b.waiting()[0]
	queued := publishAsync(b.pub, topic, msgWith(bg, "queued"))
	pgtest.WaitFor(t, "a call to queue", 30*time.Second, func() bool { return b.pending(stream) == 1 })
	// And one in the caller's transaction, on another topic.
	tx, err := b.store.Pool().Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(bg) }()
	inTx := publishAsync(b.pub, "closing-tx", msgWith(ContextWithTx(bg, tx), "in-tx"))
	pgtest.WaitFor(t, "the append in a tx to wait for the lock", 30*time.Second, func() bool { return len(b.waiting()) == 2 })

	closed := make(chan error, 1)
	go func() { closed <- b.pub.Close() }()
	if err := returned(t, "Close", closed, bound); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan error{"leading": lead, "queued": queued, "in-tx": inTx} {
		if err := returned(t, name+" Publish", ch, time.Second); !errors.Is(err, ErrClosed) {
			t.Fatalf("%s publish: %v, want ErrClosed", name, err)
		}
	}
	if err := b.pub.Publish(topic, msgWith(bg, "after")); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after Close: %v", err)
	}
	_ = tx.Rollback(bg)
	pgtest.WaitFor(t, "the cancelled append's backend to end", 30*time.Second, func() bool { return b.backendGone(leadPID) })
	b.unlock()
	for _, topic := range []string{topic, "closing-tx"} {
		if got := b.stored(topic); len(got) != 0 {
			t.Fatalf("stored %v in %s after every publish failed", got, topic)
		}
	}
}

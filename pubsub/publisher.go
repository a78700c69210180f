package pubsub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/internal/subdefault"
	"github.com/strata-go/strata/telemetry"
)

// ErrClosed is returned by Publish after Publisher.Close and by Subscribe
// after Subscriber.Close.
var ErrClosed = errors.New("pubsub: closed")

// PublisherConfig configures a Publisher. The zero value (or nil) means
// every default.
type PublisherConfig struct {
	// Prefix starts every stream ID the Publisher writes, so that topics
	// never mix with the application's own event streams. Subscribers must
	// use the same Prefix. Default DefaultPrefix ("wm.").
	Prefix string
	// PartitionKey chooses, for each message, the stream within its topic:
	// messages with the same key keep their order for every consumer;
	// messages with different keys may be handled in parallel by the
	// partitions of a consumer group (SubscriberConfig.Partitions). It must
	// return valid UTF-8 without NUL bytes. Default nil: the whole topic is
	// one stream, so every consumer sees the topic in one total order.
	PartitionKey func(topic string, msg *message.Message) string
	// MaxBatch is the most events one append carries when concurrent
	// Publish calls to the same stream are coalesced. Default 1000.
	MaxBatch int
}

// Publisher appends Watermill messages to the event store. It implements
// message.Publisher and is safe for concurrent use.
type Publisher struct {
	store *eventstore.Store
	cfg   PublisherConfig

	mu     sync.Mutex
	closed bool
	queues map[string]*streamQueue
	wg     sync.WaitGroup

	// closing ends when Close is called: it cancels appends in flight and
	// ends the wait of queued calls.
	closing     context.Context
	closeCancel context.CancelFunc
}

// NewPublisher returns a Publisher appending to store, without the
// store's Config.Validator: Watermill messages are not domain events, and
// a *schema.Registry does not know their types (EventTypeJSON,
// EventTypeBytes), so the application's store, registry and all, can be
// passed as it is. The pool, schema and wake-ups
// are the store's.
func NewPublisher(store *eventstore.Store, cfg *PublisherConfig) (*Publisher, error) {
	if store == nil {
		return nil, errors.New("pubsub: NewPublisher: nil store")
	}
	var c PublisherConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	subdefault.Or(&c.MaxBatch, 1000)
	closing, cancel := context.WithCancel(context.Background())
	return &Publisher{store: storeview.WithValidator(store, nil), cfg: c, queues: map[string]*streamQueue{}, closing: closing, closeCancel: cancel}, nil
}

// ContextWithTx returns a context carrying tx. A message whose context
// (message.Message.SetContext) carries a tx is appended in that tx: it is
// published exactly when tx commits, together with whatever else tx
// writes, and never if tx rolls back. Watermill's CQRS buses put the
// context passed to Send and Publish on the message, so
//
//	err := eventBus.Publish(pubsub.ContextWithTx(ctx, tx), event)
//
// publishes the event in tx. As with eventstore.Store.AppendTx, such a
// Publish can fail with an error matching eventstore.ErrOutOfOrder when a
// transaction that began writing after tx published to the same stream
// first: roll tx back and run it again.
func ContextWithTx(ctx context.Context, tx pgx.Tx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// TxFromContext returns the tx that ContextWithTx put in ctx, if any.
func TxFromContext(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok && tx != nil
}

// Publish appends msgs to topic, in order, and returns once they are
// committed (or, for messages whose context carries a tx, once they are
// written in that tx). A message whose UUID is already stored in the
// topic is not stored again and counts as published, so a retried Publish
// is safe; a UUID repeated within msgs is stored once, at its first place,
// and the other messages are stored as usual.
//
// Publish gives up when the context of the messages (msg.Context(); the
// first message's, per stream, when they differ) ends or the Publisher is
// closed, whether it is still waiting for its turn or its append is under
// way: it then returns an error matching the context's error (or
// ErrClosed), and its messages were not written — unless they had already
// committed, in which case it returns nil. The messages without a tx are
// written all or nothing: in one append when they go to one stream and
// number at most MaxBatch, otherwise (several streams by PartitionKey, or
// more messages) in one transaction. An error means that none of the
// call's messages is published: those written in a caller's tx are rolled
// back to before this call (a savepoint), so that the tx may still commit
// its other writes. When the connection is lost while
// that transaction commits, Publish finds out on another connection
// whether it committed, as eventstore.Store.Append does, and returns an
// error matching eventstore.ErrAmbiguous only if it cannot tell in time
// (retrying then stores every message once).
//
// Messages without a tx that go to the same stream from concurrent Publish
// calls are coalesced into one append, so many publishers to one topic
// share a commit instead of queueing on the stream's lock. Each message's
// event carries the W3C trace context of the message's own context
// (msg.Context()), unless its metadata has a traceparent already, so a
// message keeps its publisher's trace however it was batched.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()
	if topic == "" {
		return errors.New("pubsub: publish: empty topic")
	}

	// Group the messages by (stream, tx), keeping their order within each
	// stream; there is no order between streams to keep.
	type group struct {
		stream string
		ctx    context.Context
		tx     pgx.Tx
		events []eventstore.NewEvent
	}
	type groupKey struct {
		stream string
		tx     pgx.Tx
	}
	var groups []*group
	index := map[groupKey]*group{}
	for _, msg := range msgs {
		ev, err := toEvent(topic, msg)
		if err != nil {
			return err
		}
		// Each message keeps its own trace: a coalesced append runs under
		// the first caller's ctx, whose span would otherwise be stamped on
		// every message of the batch.
		ctx := msg.Context()
		ev.Metadata.Values = telemetry.WithTraceContext(ctx, ev.Metadata.Values)
		key := ""
		if p.cfg.PartitionKey != nil {
			key = p.cfg.PartitionKey(topic, msg)
		}
		stream := StreamID(p.cfg.Prefix, topic, key)
		tx, _ := TxFromContext(ctx)
		if g, ok := index[groupKey{stream, tx}]; ok {
			g.events = append(g.events, ev)
			continue
		}
		g := &group{stream: stream, ctx: ctx, tx: tx, events: []eventstore.NewEvent{ev}}
		index[groupKey{stream, tx}] = g
		groups = append(groups, g)
	}
	// The messages of a caller's tx are written under a savepoint,
	// released (the tx's commit publishes them) once the whole Publish
	// succeeded, and rolled back if it fails: an error means that none of
	// its messages is published.
	var own []*group   // the groups without a tx, written together
	var undo []*undoTx // the savepoints in callers' txs
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			u := undo[i]
			if u.failed {
				_ = u.sp.Rollback(context.WithoutCancel(u.ctx))
				continue
			}
			// Released once this Publish is known to succeed, so that a
			// tx that publishes many times does not pile up open
			// subtransactions (past 64 they slow every snapshot of the
			// server). A failed release breaks the tx: its commit fails.
			_ = u.sp.Commit(context.WithoutCancel(u.ctx))
		}
	}()
	fail := func(err error) error {
		for _, u := range undo {
			u.failed = true
		}
		return fmt.Errorf("pubsub: publish to %q: %w", topic, err)
	}
	for _, g := range groups {
		if g.tx == nil {
			own = append(own, g)
			continue
		}
		// Close cancels the append in the caller's tx too (the tx is
		// then broken and rolls back: nothing is published).
		ctx, stop := p.withClosing(g.ctx)
		err := p.appendUndoable(ctx, g.tx, g.stream, g.events, &undo)
		stop()
		if err != nil && p.closing.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		if err != nil {
			return fail(err)
		}
	}
	var err error
	switch {
	case len(own) == 0:
	case len(own) == 1 && len(own[0].events) <= p.cfg.MaxBatch:
		err = p.appendCoalesced(own[0].ctx, own[0].stream, own[0].events)
	default:
		streams := make([]streamEvents, len(own))
		for i, g := range own {
			streams[i] = streamEvents{g.stream, g.events}
		}
		err = p.appendTogether(own[0].ctx, streams)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// undoTx is a savepoint that a failed Publish rolls back.
type undoTx struct {
	ctx    context.Context
	sp     pgx.Tx
	failed bool
}

// appendUndoable appends events to stream in tx, MaxBatch at a time, under
// a savepoint added to undo.
func (p *Publisher) appendUndoable(ctx context.Context, tx pgx.Tx, stream string, events []eventstore.NewEvent, undo *[]*undoTx) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	*undo = append(*undo, &undoTx{ctx: ctx, sp: sp})
	for chunk := range slices.Chunk(events, p.cfg.MaxBatch) {
		if err := p.appendInTx(ctx, sp, stream, chunk); err != nil {
			return err
		}
	}
	return nil
}

// Close makes later Publish calls fail with ErrClosed and ends those under
// way: a call still waiting for its turn returns ErrClosed at once, an
// append in flight is cancelled (its call returns an error matching
// ErrClosed if nothing was written, nil if it had committed). Close returns
// once every call has returned, without waiting for a database that does
// not answer.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeCancel()
	p.wg.Wait()
	return nil
}

// withClosing returns ctx, also cancelled when the Publisher closes.
func (p *Publisher) withClosing(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.closing, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// gone reports why a request whose context is ctx must not be appended
// (any more): the Publisher closed or ctx ended. nil means go on.
func (p *Publisher) gone(ctx context.Context) error {
	if p.closing.Err() != nil {
		return ErrClosed
	}
	return ctx.Err()
}

// appendInTx appends in the caller's tx under a savepoint, so that a
// duplicate message (already stored) is skipped without aborting tx.
func (p *Publisher) appendInTx(ctx context.Context, tx pgx.Tx, stream string, events []eventstore.NewEvent) error {
	for len(events) > 0 {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		_, err = p.store.AppendTx(ctx, sp, stream, eventstore.Any, events...)
		if err == nil {
			return sp.Commit(ctx)
		}
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		rest, ok := withoutDuplicate(events, err)
		if !ok {
			return err
		}
		events = rest
	}
	return nil
}

// withoutDuplicate returns events less what err reports as a duplicate, if
// err is such a report naming an event of the list: an ID the list holds
// more than once (the store refuses a repeat within one append before
// writing) keeps its first event only; an ID it holds once is already
// stored, and its event goes.
func withoutDuplicate(events []eventstore.NewEvent, err error) ([]eventstore.NewEvent, bool) {
	var dup *eventstore.DuplicateEventError
	if !errors.As(err, &dup) || dup.ID == uuid.Nil {
		return nil, false
	}
	n := 0
	for _, e := range events {
		if e.ID == dup.ID {
			n++
		}
	}
	if n == 0 {
		return nil, false
	}
	rest := make([]eventstore.NewEvent, 0, len(events)-1)
	kept := n == 1 // stored already: keep none
	for _, e := range events {
		if e.ID == dup.ID {
			if kept {
				continue
			}
			kept = true
		}
		rest = append(rest, e)
	}
	return rest, true
}

// publishReq is one Publish call's events for one stream, waiting to be
// appended, possibly together with other calls' events.
type publishReq struct {
	ctx    context.Context
	events []eventstore.NewEvent
	done   chan error         // the outcome
	lead   chan []*publishReq // or: append this batch (leadership passed on)
}

// streamQueue holds the requests for a stream that arrived while an append
// to it was under way.
type streamQueue struct {
	pending []*publishReq
}

// appendCoalesced appends events to stream, batching them with other
// Publish calls' events for the same stream. One caller at a time appends
// (the leader); calls arriving meanwhile queue, and when the append ends
// the first of them leads the next append with everything queued. Order is
// kept: a call's events are appended after those of calls that returned
// before it began. A call whose ctx ends, or that the Publisher's Close
// ends, leaves the queue at once; once its events are in an append under
// way, that append is cancelled and the call gets its outcome (see
// appendBatch).
func (p *Publisher) appendCoalesced(ctx context.Context, stream string, events []eventstore.NewEvent) error {
	if err := p.gone(ctx); err != nil {
		return err
	}
	req := &publishReq{ctx: ctx, events: events, done: make(chan error, 1), lead: make(chan []*publishReq, 1)}
	p.mu.Lock()
	q, busy := p.queues[stream]
	if busy {
		q.pending = append(q.pending, req)
		p.mu.Unlock()
		select {
		case err := <-req.done:
			return err
		case batch := <-req.lead:
			p.lead(stream, q, batch)
			return <-req.done
		case <-ctx.Done():
		case <-p.closing.Done():
		}
		// Given up while queued: leave the queue, unless a leader has
		// taken the request into its batch meanwhile.
		p.mu.Lock()
		i := slices.Index(q.pending, req)
		if i >= 0 {
			q.pending = slices.Delete(q.pending, i, i+1)
		}
		p.mu.Unlock()
		if i >= 0 {
			return p.gone(ctx) // nothing of it was sent
		}
		select {
		case err := <-req.done:
			return err
		case batch := <-req.lead:
			p.lead(stream, q, batch)
			return <-req.done
		}
	}
	q = &streamQueue{}
	p.queues[stream] = q
	p.mu.Unlock()
	p.lead(stream, q, []*publishReq{req})
	return <-req.done
}

// lead appends batch, then hands the queued requests to the first of them.
func (p *Publisher) lead(stream string, q *streamQueue, batch []*publishReq) {
	p.appendBatch(stream, batch)
	p.mu.Lock()
	if len(q.pending) == 0 {
		delete(p.queues, stream)
		p.mu.Unlock()
		return
	}
	n, size := 0, 0
	for n < len(q.pending) && (n == 0 || size+len(q.pending[n].events) <= p.cfg.MaxBatch) {
		size += len(q.pending[n].events)
		n++
	}
	next := q.pending[:n:n]
	q.pending = slices.Clone(q.pending[n:])
	p.mu.Unlock()
	next[0].lead <- next
}

// appendBatch appends the events of batch in one append and tells each
// request its outcome. An event already stored is dropped and the rest
// appended again, as is a repeated event ID (its first event is kept); an
// event the store refuses fails only its own request. The append is
// cancelled when a request's ctx ends or the Publisher closes: the requests
// that ended get the append's outcome (nil if it stored their events), the
// others are appended again (their event IDs are fixed, so an append that
// did commit is not repeated).
func (p *Publisher) appendBatch(stream string, batch []*publishReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := p.gone(r.ctx); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	var stored map[uuid.UUID]bool // reported as already stored
	dedup := false                // an event ID was repeated in the batch
	for len(live) > 0 {
		events, owner := batchEvents(live, stored, dedup)
		if len(events) == 0 {
			tell(live, nil)
			return
		}
		ctx, stop := p.batchContext(live)
		_, err := p.store.Append(ctx, stream, eventstore.Any, events...)
		stop()
		if err == nil {
			tell(live, nil)
			return
		}
		// The requests given up on end with the append's error; the rest
		// go on.
		n := len(live)
		live = slices.DeleteFunc(live, func(r *publishReq) bool {
			gerr := p.gone(r.ctx)
			if gerr != nil {
				r.done <- fmt.Errorf("%w: %w", gerr, err)
			}
			return gerr != nil
		})
		if len(live) < n {
			continue
		}
		var dup *eventstore.DuplicateEventError
		var bad *eventstore.InvalidEventError
		switch {
		case errors.As(err, &dup) && dup.ID != uuid.Nil:
			repeats := 0
			for _, e := range events {
				if e.ID == dup.ID {
					repeats++
				}
			}
			switch {
			case repeats > 1 && !dedup:
				dedup = true // refused before writing: append each ID once
			case repeats == 1:
				if stored == nil {
					stored = map[uuid.UUID]bool{}
				}
				stored[dup.ID] = true
			default:
				tell(live, err)
				return
			}
		case errors.As(err, &bad) && bad.Index >= 0 && bad.Index < len(owner) && len(live) > 1:
			i := owner[bad.Index]
			live[i].done <- err
			live = slices.Delete(live, i, i+1)
		case len(live) > 1:
			// Not pinned on one request: append each on its own.
			for _, r := range live {
				p.appendBatch(stream, []*publishReq{r})
			}
			return
		default:
			tell(live, err)
			return
		}
	}
}

// batchEvents lists the events of live's requests for one append, and the
// request each comes from, leaving out the IDs known to be stored and,
// with dedup, every repeat of an ID after its first event.
func batchEvents(live []*publishReq, stored map[uuid.UUID]bool, dedup bool) (events []eventstore.NewEvent, owner []int) {
	var seen map[uuid.UUID]bool
	if dedup {
		seen = map[uuid.UUID]bool{}
	}
	for i, r := range live {
		for _, e := range r.events {
			if stored[e.ID] || seen[e.ID] {
				continue
			}
			if seen != nil {
				seen[e.ID] = true
			}
			events = append(events, e)
			owner = append(owner, i)
		}
	}
	return events, owner
}

// batchContext returns the context of an append for live: the first
// request's values (its trace), cancelled when any request's ctx ends or
// the Publisher closes.
func (p *Publisher) batchContext(live []*publishReq) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(live[0].ctx))
	stops := make([]func() bool, 0, len(live)+1)
	stops = append(stops, context.AfterFunc(p.closing, cancel))
	for _, r := range live {
		stops = append(stops, context.AfterFunc(r.ctx, cancel))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// tell gives every request of batch the outcome err.
func tell(batch []*publishReq, err error) {
	for _, r := range batch {
		r.done <- err
	}
}

var _ message.Publisher = (*Publisher)(nil)

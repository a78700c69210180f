package eventstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/pgtx"
)

// The append combiner.
//
// Every Append (not AppendTx) goes through the Store's combiner, which
// folds the appends that arrive while others are on their way to the
// database into one statement, one round trip and one commit
// (appendBatchSQL), instead of one of each per append: on a busy store the
// commits (a WAL flush each) and the per-statement work are what limits
// throughput, and one statement for many appends pays them once.
//
// The rules:
//
//   - An append that arrives when no statement is on its way goes at
//     once, alone, with the single statement of appendsql.go: a lone
//     writer waits for nobody and pays nothing for the combiner. The
//     others queue. The queue (up to maxBatchAppends appends,
//     maxBatchEvents events) becomes the next statement when fewer than
//     maxInFlight statements are on their way and it holds at least as
//     many appends as those statements do on average (pacing, below), or
//     when the last statement on its way ends. There are no timers.
//   - Pacing: the appends of a statement that ends come back to the
//     combiner together, one after the other (their callers append
//     again). If the first one back took the freed slot with a statement
//     of its own, the others would queue behind it: under load the
//     statements settle into turns of one large statement and one of a
//     single append, each paying a whole statement and commit (measured
//     at 16 writers: one append in ten went alone). So while statements
//     are on their way, the queue starts the next one only once it holds
//     as many appends as they do on average, which spreads a busy
//     store's appends evenly over the statements (BenchmarkAppendOne
//     with STRATA_BENCH_UNPACED=1 compares the two). It cannot stall: a
//     queued append waits only while a statement is on its way, and when
//     the last one ends the queue goes, whatever its size.
//   - A batch holds at most one append per stream, and no append to a
//     stream whose append is on its way: a stream's appends go one after
//     the other in the order they queued, the second seeing the first's
//     version, as they would from one goroutine.
//   - The batch is run by the goroutine of its first append (no goroutine
//     of the combiner's own), on a context that ends only when the
//     contexts of all its appends have ended: one caller giving up does
//     not cut the others' statement.
//   - Each append keeps its own outcome. Refused by its expected version:
//     it is explained on its own (conflict). When the statement fails (a
//     stored event ID, data the server refuses, a deadlock with a caller's
//     transaction), it wrote nothing, and each append of the batch is run
//     again alone, so that only the one at fault fails (its stream's next
//     append stays queued until it has run). When the
//     connection is lost with the statement possibly on the server, the
//     server process is ended once and each append looks its own events
//     up (resolve.go), as a single Append does.
//   - An append whose context ends while it is queued leaves the queue:
//     nothing was sent.

// Limits of one combined statement.
const (
	// maxInFlight is how many statements of appends may be on their way at
	// once: one executing while the other commits keeps both the server
	// and the connection busy. 3 and 4 (paced) measured no faster on a
	// 2-core server, and slower at 16 writers (smaller statements).
	maxInFlight = 2
	// maxBatchAppends and maxBatchEvents bound a combined statement (an
	// append larger than maxBatchEvents goes alone).
	maxBatchAppends = 256
	maxBatchEvents  = 2048
	// maxBatchBytes bounds the data and metadata of a combined statement,
	// far below Postgres' 1 GiB limit on one protocol message (events may
	// be up to Config.MaxEventSize each); an append larger than it goes
	// alone.
	maxBatchBytes = 32 << 20
)

// combiner queues and combines a Store's appends. Shared by the Stores
// withValidator derives.
type combiner struct {
	s *Store

	// combined and statements count the appends sent in combined
	// statements and those statements (tests read them).
	combined, statements atomic.Int64

	maxInFlight int  // maxInFlight, unless a test sets another
	unpaced     bool // a benchmark's comparison: no pacing (takeLocked)

	mu       sync.Mutex
	queue    []*pendingAppend
	inFlight int                 // statements on their way
	flying   int                 // appends in the statements on their way
	busy     map[string]struct{} // streams of the batches on their way
}

func newCombiner(s *Store) *combiner {
	return &combiner{s: s, maxInFlight: maxInFlight, busy: map[string]struct{}{}}
}

// batchOutcome is what the batch left for one of its appends to do.
type batchOutcome int

const (
	outcomeWritten   batchOutcome = iota // res is the result
	outcomeRefused                       // refused by its check: explain it (conflict)
	outcomeAlone                         // the statement failed: run the append alone
	outcomeFailed                        // err: nothing was written
	outcomeLost                          // the connection was lost: look the events up
	outcomeAbandoned                     // the run panicked: unknown (errBatchAbandoned)
)

// pendingAppend is one Append in the combiner.
type pendingAppend struct {
	ctx      context.Context
	stream   string
	expected ExpectedVersion
	a        *appendArgs

	wake chan struct{}    // signalled once: lead is set, or the outcome is
	lead []*pendingAppend // a batch this append's goroutine is to run

	outcome batchOutcome
	res     AppendResult
	err     error
	pid     uint32 // outcomeLost: the lost connection's server process, ended
}

// append runs one append through the combiner and returns its outcome.
func (c *combiner) append(ctx context.Context, streamID string, expected ExpectedVersion, a *appendArgs) (AppendResult, error) {
	p := &pendingAppend{ctx: ctx, stream: streamID, expected: expected, a: a, wake: make(chan struct{}, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	batches := c.takeLocked()
	c.mu.Unlock()
	dispatch(batches)

	select {
	case <-p.wake:
	case <-ctx.Done():
		c.mu.Lock()
		for i, q := range c.queue {
			if q == p { // still queued: nothing was sent
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				c.mu.Unlock()
				return AppendResult{}, fmt.Errorf("eventstore: append to %q: %w", streamID, ctx.Err())
			}
		}
		c.mu.Unlock()
		<-p.wake // in a batch on its way: its outcome is the truth
	}
	if p.lead != nil {
		batch := p.lead
		p.lead = nil
		c.run(batch) // p is its first append: its outcome is set
	}
	return c.finish(p)
}

// size is the bytes of an append's data and metadata, what a combined
// statement's size is bounded by (maxBatchBytes).
func (a *appendArgs) size() int {
	n := 0
	for i := range a.data {
		n += len(a.data[i]) + len(a.meta[i])
	}
	return n
}

// takeLocked forms the batches that may start now. c.mu is held.
func (c *combiner) takeLocked() [][]*pendingAppend {
	var out [][]*pendingAppend
	for c.inFlight < c.maxInFlight && len(c.queue) > 0 {
		// Pacing (see above): with statements on their way, the queue
		// waits until it is as large as they are on average.
		if c.inFlight > 0 && len(c.queue)*c.inFlight < c.flying && !c.unpaced {
			break
		}
		var batch []*pendingAppend
		events, bytes := 0, 0
		rest := c.queue[:0]
		for _, p := range c.queue {
			n, b := len(p.a.ids), p.a.size()
			_, busy := c.busy[p.stream]
			if busy || len(batch) == maxBatchAppends || (len(batch) > 0 && (events+n > maxBatchEvents || bytes+b > maxBatchBytes)) {
				rest = append(rest, p)
				continue
			}
			c.busy[p.stream] = struct{}{}
			batch = append(batch, p)
			events, bytes = events+n, bytes+b
		}
		clear(c.queue[len(rest):])
		c.queue = rest
		if len(batch) == 0 {
			break // every queued append waits for its stream
		}
		c.inFlight++
		c.flying += len(batch)
		out = append(out, batch)
	}
	return out
}

// dispatch hands each batch to the goroutine of its first append (the
// caller's own included), which runs it when it receives the signal.
func dispatch(batches [][]*pendingAppend) {
	for _, b := range batches {
		b[0].lead = b
		// The signal follows the write of lead (self's too, which reads
		// it only after receiving the signal).
		b[0].wake <- struct{}{}
	}
}

// run sends one batch and sets every append's outcome, then starts the
// batches the queue holds. It runs on the goroutine of batch[0].
func (c *combiner) run(batch []*pendingAppend) {
	// Whatever happens below (a panic included), every append of the
	// batch gets an outcome, the batch leaves the statements on their way
	// and the queue moves on.
	for _, p := range batch {
		p.outcome = outcomeAbandoned
	}
	ended := false
	defer func() {
		if !ended && batch[0].outcome == outcomeAlone {
			// Panicking: batch[0]'s goroutine will not run it alone
			// (finish), nor free its stream.
			batch[0].outcome = outcomeAbandoned
		}
		c.done(batch)
	}()
	if len(batch) == 1 {
		// Alone: the single statement, on the append's own context.
		p := batch[0]
		p.res, p.err = c.s.appendPooled(p.ctx, c.s.pool, p.stream, p.expected, p.a)
		p.outcome = outcomeFailed
		if p.err == nil {
			p.outcome = outcomeWritten
		}
	} else {
		c.statements.Add(1)
		c.combined.Add(int64(len(batch)))
		c.runBatch(batch)
	}
	ended = true
}

// errBatchAbandoned is the cause of the *AmbiguousError of the appends of
// a batch whose run ended without giving them an outcome: a panic on the
// goroutine running it (which goes on panicking there), at a moment
// when the statement may have committed.
var errBatchAbandoned = errors.New("eventstore: the combined append was abandoned by a panic")

// done ends a batch's run: it wakes the batch's other appends and starts
// the batches the queue holds.
func (c *combiner) done(batch []*pendingAppend) {
	c.mu.Lock()
	c.inFlight--
	c.flying -= len(batch)
	for _, p := range batch {
		if p.outcome != outcomeAlone {
			delete(c.busy, p.stream)
		}
		// An append to be run again alone keeps its stream busy until
		// it has run (release): the stream's next append must see it.
	}
	next := c.takeLocked()
	c.mu.Unlock()
	for _, p := range batch[1:] {
		p.wake <- struct{}{}
	}
	dispatch(next)
}

// release frees the stream of an append that ran alone after its batch
// and starts the batches the queue holds.
func (c *combiner) release(stream string) {
	c.mu.Lock()
	delete(c.busy, stream)
	next := c.takeLocked()
	c.mu.Unlock()
	dispatch(next)
}

// finish turns what the batch left for p into Append's answer, doing on
// p's goroutine what is its own to do.
func (c *combiner) finish(p *pendingAppend) (AppendResult, error) {
	s := c.s
	switch p.outcome {
	case outcomeWritten:
		return p.res, nil
	case outcomeRefused:
		return AppendResult{}, s.conflict(p.ctx, s.pool, p.stream, p.expected)
	case outcomeAlone:
		defer c.release(p.stream)
		return s.appendPooled(p.ctx, s.pool, p.stream, p.expected, p.a)
	case outcomeLost:
		res, stored, err := s.resolve(p.ctx, p.pid, false, p.stream, p.a.ids)
		return s.resolved(p.ctx, p.stream, p.a, p.err, res, stored, err)
	case outcomeAbandoned:
		ids := make([]uuid.UUID, len(p.a.ids))
		for i, id := range p.a.ids {
			ids[i] = id
		}
		return AppendResult{}, &AmbiguousError{StreamID: p.stream, EventIDs: ids, Err: errBatchAbandoned, Resolve: errBatchAbandoned}
	default:
		return AppendResult{}, p.err
	}
}

// batchArgs lays out a batch as appendBatchSQL's parameters.
func batchArgs(batch []*pendingAppend) []any {
	n := 0
	for _, p := range batch {
		n += len(p.a.ids)
	}
	streams, cats, principals := make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch))
	kinds, expected, counts := make([]int32, len(batch)), make([]int64, len(batch)), make([]int64, len(batch))
	idx, place := make([]int64, 0, n), make([]int64, 0, n)
	ids, types, svs := make([][16]byte, 0, n), make([]string, 0, n), make([]int32, 0, n)
	data, meta, corr, caus := make([][]byte, 0, n), make([][]byte, 0, n), make([]string, 0, n), make([]string, 0, n)
	for i, p := range batch {
		streams[i], cats[i], counts[i], principals[i] = p.stream, Category(p.stream), int64(len(p.a.ids)), p.a.principal
		switch {
		case p.expected == Any:
			kinds[i] = int32(expectAny)
		case p.expected == NoStream:
			kinds[i] = int32(expectNone)
		case p.expected == StreamExists:
			kinds[i] = int32(expectExists)
		default:
			kinds[i], expected[i] = int32(expectExactly), int64(p.expected)
		}
		for k := range p.a.ids {
			idx, place = append(idx, int64(i+1)), append(place, int64(k+1))
		}
		ids, types, svs = append(ids, p.a.ids...), append(types, p.a.types...), append(svs, p.a.versions...)
		data, meta = append(data, p.a.data...), append(meta, p.a.meta...)
		corr, caus = append(corr, p.a.corr...), append(caus, p.a.caus...)
	}
	return []any{streams, cats, kinds, expected, counts, idx, place, ids, types, svs, data, meta, corr, caus, principals}
}

// batchContext returns the context a batch's statement runs on: it carries
// the first append's values and ends when the contexts of all the batch's
// appends have ended (a context that cannot end keeps it open).
func batchContext(batch []*pendingAppend) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	var left atomic.Int64
	left.Store(int64(len(batch)))
	stops := make([]func() bool, 0, len(batch))
	for _, p := range batch {
		if p.ctx.Done() == nil {
			continue
		}
		stops = append(stops, context.AfterFunc(p.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// runBatch sends a batch of two or more appends as one statement.
func (c *combiner) runBatch(batch []*pendingAppend) {
	s := c.s
	ctx, stop := batchContext(batch)
	defer stop()
	setAll := func(o batchOutcome, err error) {
		for _, p := range batch {
			p.outcome, p.err = o, err
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		for _, p := range batch {
			p.outcome, p.err = outcomeFailed, fmt.Errorf("eventstore: append to %q: %w", p.stream, err)
		}
		return
	}
	// Released once, on every path, a panic's included (then each append's
	// outcome stays outcomeAbandoned).
	var released bool
	release := func() {
		if !released {
			released = true
			conn.Release()
		}
	}
	defer release()
	notify, claimed, prevNotify := s.shouldNotify()
	q := s.sql.appendBatch[0]
	if notify {
		q = s.sql.appendBatch[1]
	}
	// The outcomes are set once the statement's result is read whole: an
	// append without a row was refused by its check.
	results := make([]*AppendResult, len(batch))
	written := 0
	rows, err := conn.Query(ctx, q, batchArgs(batch)...)
	if err == nil {
		defer rows.Close()
		for rows.Next() {
			var i, version, pos, tx int64
			if err = rows.Scan(&i, &version, &pos, &tx); err != nil {
				break
			}
			if i < 1 || int(i) > len(batch) {
				err = fmt.Errorf("eventstore: combined append returned append %d of %d", i, len(batch))
				break
			}
			results[i-1] = &AppendResult{Version: version, Position: Position{TxID: uint64(tx), Seq: pos}}
			written++
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err == nil {
		for i, p := range batch {
			if r := results[i]; r != nil {
				p.outcome, p.res = outcomeWritten, *r
			} else {
				p.outcome = outcomeRefused
			}
		}
	}
	if notify && (err != nil || written == 0) {
		s.shared.lastNotify.CompareAndSwap(claimed, prevNotify) // as appendOnce
	}
	if err == nil {
		return
	}
	if !outcomeUnknown(err) {
		// The server answered with an error (a lock timeout included, see
		// appendBatchSQL): the statement wrote nothing. Whose append it is
		// cannot be told apart reliably; each runs alone.
		setAll(outcomeAlone, nil)
		return
	}
	// Lost with the statement possibly on the server: end its server
	// process once (resolve.go), then each append looks its own events up.
	pgc := conn.Conn().PgConn()
	pid, lost := pgc.PID(), pgc.IsClosed()
	release()
	if lost {
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ResolveTimeout)
		endErr := pgtx.End(ectx, s.pool, pid, s.cfg.ResolveTimeout)
		cancel()
		if endErr != nil {
			for _, p := range batch {
				_, p.err = s.resolved(p.ctx, p.stream, p.a, err, AppendResult{}, false,
					fmt.Errorf("%w (gave up after %s)", endErr, s.cfg.ResolveTimeout))
				p.outcome = outcomeFailed
			}
			return
		}
	}
	for _, p := range batch {
		p.outcome, p.err, p.pid = outcomeLost, err, pid
	}
}

// pooledAppend runs one attempt of Append on the pool: through the
// combiner unless Config.DisableCombiner.
func (s *Store) pooledAppend(ctx context.Context, pool *pgxpool.Pool, streamID string, expected ExpectedVersion, a *appendArgs) (AppendResult, error) {
	if s.comb == nil {
		return s.appendPooled(ctx, pool, streamID, expected, a)
	}
	return s.comb.append(ctx, streamID, expected, a)
}

package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/schema"
)

// ErrNotFound is returned (wrapped) by Load, LoadTx and LoadAt for an
// aggregate whose stream has no events. errors.Is(err,
// eventstore.ErrStreamNotFound) is true for it too.
var ErrNotFound error = notFound{}

type notFound struct{}

func (notFound) Error() string { return "aggregate not found" }

// Is makes errors.Is(ErrNotFound, eventstore.ErrStreamNotFound) true.
func (notFound) Is(target error) bool { return target == eventstore.ErrStreamNotFound }

// Config configures a Repository. The zero value (or nil) means every
// default.
type Config struct {
	// Category is the first part of the aggregate's stream IDs: the stream
	// of aggregate "42" is Category + "-42". It must not contain '-', the
	// separator eventstore.Category splits on. Default: the lower-cased
	// name of the aggregate's Go type ("order" for *Order).
	Category string
	// SnapshotEvery saves a snapshot of the aggregate whenever a save
	// carries its version across a multiple of SnapshotEvery, and makes
	// loads start from the latest snapshot. Default 0: no snapshots are
	// saved or read.
	SnapshotEvery int64
	// SnapshotVersion versions the encoding of the aggregate's state (its
	// exported fields as JSON). Increase it whenever the state struct
	// changes shape: loads then ignore the snapshots of other versions and
	// rebuild from events. Default 1.
	SnapshotVersion int
	// MaxRetries caps how many times Update reruns after a version
	// conflict; when they are used up, Update returns the conflict error.
	// Default 0: retry until the context ends.
	MaxRetries int
	// RetryDelay is the longest wait before Update's first retry; each
	// later retry may wait twice as long, up to MaxRetryDelay. Each wait
	// is drawn at random between zero and its bound, so that writers
	// racing on one aggregate spread out. Default 1ms.
	RetryDelay time.Duration
	// MaxRetryDelay bounds the waits between Update's retries. Default
	// 100ms.
	MaxRetryDelay time.Duration
	// OnLoad, when set, is called after every load that found the
	// aggregate (Load, LoadTx, LoadAt and Update's loads) with what it
	// read: use it for metrics or to tune SnapshotEvery. It must be safe
	// for concurrent use and quick. Default nil.
	OnLoad func(LoadStats)
	// Logger receives the warnings of snapshots that could not be saved
	// or read. Default: the store's logger (eventstore.Config.Logger).
	Logger *slog.Logger
}

// LoadStats tells what one load read.
type LoadStats struct {
	// StreamID is the aggregate's stream.
	StreamID string
	// Snapshot is the stream version of the snapshot the load started
	// from; 0 when it started from the first event.
	Snapshot int64
	// IgnoredSnapshot says why a stored snapshot was not used (another
	// SnapshotVersion, or data that does not decode); "" when none was
	// ignored.
	IgnoredSnapshot string
	// Events is the number of events read and applied.
	Events int
	// Version is the version of the loaded aggregate.
	Version int64
	// Duration is the time the load took.
	Duration time.Duration
}

// At bounds LoadAt. The zero At loads every event.
type At struct {
	// Version, when above 0, stops the load after the event of this
	// version.
	Version int64
	// Time, when not zero, stops the load before the first event recorded
	// after Time (events are recorded at their transaction's start time).
	Time time.Time
}

// stops reports whether e is past the bound.
func (at At) stops(e eventstore.Event) bool {
	return (at.Version > 0 && e.Version > at.Version) || (!at.Time.IsZero() && e.RecordedAt.After(at.Time))
}

// Repository loads and saves aggregates of one type, each in its own
// stream. It is safe for concurrent use; the aggregates it returns are
// not.
type Repository[T Aggregate] struct {
	store *eventstore.Store
	reg   *schema.Registry
	newFn func(id string) T
	cfg   Config
}

// NewRepository returns a repository of the aggregates newFn makes. newFn
// returns a new, empty aggregate (a pointer to a struct embedding Root);
// the repository sets its ID and wires it to its Apply method. Events are
// encoded and decoded (upcast as needed) by reg.
//
// NewRepository panics on a nil argument or an invalid Category: both are
// programming errors.
func NewRepository[T Aggregate](store *eventstore.Store, reg *schema.Registry, newFn func(id string) T, cfg *Config) *Repository[T] {
	if store == nil || reg == nil || newFn == nil {
		panic("aggregate: NewRepository needs a store, a registry and a function making new aggregates")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Category == "" {
		t := reflect.TypeFor[T]()
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		c.Category = strings.ToLower(t.Name())
	}
	if c.Category == "" || strings.Contains(c.Category, "-") {
		panic(fmt.Sprintf("aggregate: category %q: want a non-empty name without '-'", c.Category))
	}
	if c.SnapshotVersion == 0 {
		c.SnapshotVersion = 1
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = time.Millisecond
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 100 * time.Millisecond
	}
	c.MaxRetryDelay = max(c.MaxRetryDelay, c.RetryDelay)
	if c.Logger == nil {
		c.Logger = storeview.Of(store).Logger
	}
	return &Repository[T]{store: store, reg: reg, newFn: newFn, cfg: c}
}

// StreamID returns the stream ID of aggregate id: "order-42".
func (r *Repository[T]) StreamID(id string) string { return r.cfg.Category + "-" + id }

// New returns a new aggregate with the given ID, wired and at version 0.
// Raise its first events and Save it: the save fails with a conflict if
// the aggregate already exists.
func (r *Repository[T]) New(id string) T { return Rehydrate(r.newFn(id), id) }

// Load returns the aggregate with its current state: the latest snapshot
// (when SnapshotEvery is set) plus the events after it, decoded by the
// registry and applied in order. An aggregate without events returns an
// error matching ErrNotFound.
func (r *Repository[T]) Load(ctx context.Context, id string) (T, error) {
	return r.load(ctx, conn{store: r.store}, id, nil)
}

// LoadTx is Load inside the caller's transaction.
func (r *Repository[T]) LoadTx(ctx context.Context, tx pgx.Tx, id string) (T, error) {
	return r.load(ctx, conn{store: r.store, tx: tx}, id, nil)
}

// LoadAt returns the aggregate as it was at a version or a time, for
// audits and debugging: it replays the events from the first, never from
// a snapshot, and stops at the bound. It returns an error matching
// ErrNotFound when no event is within the bound. Saving an aggregate
// loaded at an older version fails with a conflict.
func (r *Repository[T]) LoadAt(ctx context.Context, id string, at At) (T, error) {
	return r.load(ctx, conn{store: r.store}, id, &at)
}

// Save appends the aggregate's pending events to its stream, expecting the
// stream to be at the aggregate's version (no stream for version 0), with
// the metadata of ctx (WithMetadata) and opts on every event. On success
// the aggregate's version moves to its last event and nothing is pending;
// a snapshot is then saved if one is due (a snapshot that fails is logged,
// never returned: the events are stored).
//
// When another writer got there first, Save writes nothing and returns an
// error matching eventstore.ErrConflict; the aggregate is then stale:
// load it again (Update does this for you). An event the registry refuses
// returns its error before anything is written. Save with nothing pending
// does nothing.
func (r *Repository[T]) Save(ctx context.Context, a T, opts ...Opts) error {
	return r.save(ctx, conn{store: r.store}, a, callMetadata(ctx, opts))
}

// SaveTx is Save inside the caller's transaction: the events commit with
// whatever else tx writes. A due snapshot is saved in tx too, behind a
// savepoint, so that its failure leaves tx usable. If tx rolls back, the
// aggregate's version is wrong: load it again. Besides a conflict, SaveTx
// can return an error matching eventstore.ErrOutOfOrder (a transaction that
// began writing after tx appended to the stream first): roll tx back and
// run it again.
func (r *Repository[T]) SaveTx(ctx context.Context, tx pgx.Tx, a T, opts ...Opts) error {
	return r.save(ctx, conn{store: r.store, tx: tx}, a, callMetadata(ctx, opts))
}

// Update loads the aggregate, runs fn on it and saves the events fn
// raised. When fn returns an error, nothing is written and that error is
// returned as is. An aggregate that does not exist yet is new to fn
// (version 0), so one Update both creates and changes aggregates; fn can
// tell by Version() == 0.
//
// When another writer saved the aggregate in between, Update loads it
// again and reruns fn, after a random wait that grows with each conflict
// (RetryDelay, MaxRetryDelay), until the save succeeds, ctx ends (the
// error then matches both ctx's error and eventstore.ErrConflict) or
// MaxRetries reruns are used up (the conflict error is returned). So fn
// may run more than once: it must only change the aggregate.
func (r *Repository[T]) Update(ctx context.Context, id string, fn func(T) error, opts ...Opts) error {
	md := callMetadata(ctx, opts)
	c := conn{store: r.store}
	wait := retry.Full(r.cfg.RetryDelay, r.cfg.MaxRetryDelay)
	for attempt := 1; ; attempt++ {
		conflict, err := r.updateOnce(ctx, c, id, fn, md)
		if !conflict {
			return err
		}
		if r.cfg.MaxRetries > 0 && attempt > r.cfg.MaxRetries {
			return fmt.Errorf("aggregate: update %q: gave up after %d attempts: %w", r.StreamID(id), attempt, err)
		}
		if !retry.Sleep(ctx, wait.NextBackOff()) {
			return fmt.Errorf("aggregate: update %q: %w after %d attempts; last: %w", r.StreamID(id), ctx.Err(), attempt, err)
		}
	}
}

// UpdateTx is one attempt of Update inside the caller's transaction: it
// does not retry, because it cannot undo what else the transaction did.
// On a conflict it returns an error matching eventstore.ErrConflict and
// writes nothing; retry the whole transaction (the same for
// eventstore.ErrOutOfOrder, see SaveTx).
func (r *Repository[T]) UpdateTx(ctx context.Context, tx pgx.Tx, id string, fn func(T) error, opts ...Opts) error {
	_, err := r.updateOnce(ctx, conn{store: r.store, tx: tx}, id, fn, callMetadata(ctx, opts))
	return err
}

// updateOnce loads, runs fn and saves, reporting whether the save lost a
// race (the only failure worth a retry).
func (r *Repository[T]) updateOnce(ctx context.Context, c conn, id string, fn func(T) error, md eventstore.Metadata) (conflict bool, err error) {
	a, err := r.load(ctx, c, id, nil)
	if errors.Is(err, ErrNotFound) {
		a, err = r.New(id), nil
	}
	if err != nil {
		return false, err
	}
	if err := fn(a); err != nil {
		return false, err
	}
	err = r.save(ctx, c, a, md)
	return errors.Is(err, eventstore.ErrConflict), err
}

func (r *Repository[T]) load(ctx context.Context, c conn, id string, at *At) (T, error) {
	var zero T
	start := time.Now()
	stream := r.StreamID(id)
	st := LoadStats{StreamID: stream}
	a := r.newFn(id)
	root := wire(a, id)
	if r.cfg.SnapshotEvery > 0 && at == nil {
		snap, err := c.loadSnapshot(ctx, stream)
		switch {
		case errors.Is(err, eventstore.ErrSnapshotNotFound):
		case err != nil:
			return zero, fmt.Errorf("aggregate: load %q: %w", stream, err)
		case snap.SchemaVersion != r.cfg.SnapshotVersion:
			st.IgnoredSnapshot = fmt.Sprintf("snapshot of version %d has state version %d, want %d", snap.Version, snap.SchemaVersion, r.cfg.SnapshotVersion)
		default:
			if err := json.Unmarshal(snap.Data, a); err != nil {
				st.IgnoredSnapshot = fmt.Sprintf("snapshot of version %d does not decode: %v", snap.Version, err)
				r.cfg.Logger.WarnContext(ctx, "aggregate: snapshot ignored", "stream", stream, "version", snap.Version, "error", err)
				a = r.newFn(id) // the failed decode may have filled some fields
				root = wire(a, id)
			} else {
				root.version, st.Snapshot = snap.Version, snap.Version
			}
		}
	}
	apply := func(e eventstore.Event) error {
		v, err := r.reg.Decode(e)
		if err != nil {
			return fmt.Errorf("aggregate: load %q: event %d: %w", stream, e.Version, err)
		}
		a.Apply(v)
		root.version = e.Version
		st.Events++
		return nil
	}
	// The first events are decoded as they are read. A long stream is
	// handed to a decoder goroutine after that, so that reading rows and
	// decoding JSON overlap; the aggregate then belongs to the decoder
	// until wait returns.
	var dec *decoder
	inline := 0
	// From a snapshot, the read starts at the snapshot's own event, which
	// is skipped: the stream then never reads as empty, which would cost
	// the store a second query to tell "no events after" from "no stream".
	from, skip := root.version+1, int64(-1)
	if root.version > 0 {
		from, skip = root.version, root.version
	}
	for e, err := range c.readStream(ctx, stream, from) {
		if err == nil && e.Version == skip {
			continue
		}
		if err != nil {
			if dec != nil {
				_ = dec.wait()
			}
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				return zero, fmt.Errorf("aggregate: load %q: %w", stream, ErrNotFound)
			}
			return zero, fmt.Errorf("aggregate: load %q: %w", stream, err)
		}
		if at != nil && at.stops(e) {
			break
		}
		if dec == nil && inline < inlineEvents {
			inline++
			if err := apply(e); err != nil {
				return zero, err
			}
			continue
		}
		if dec == nil {
			dec = startDecoder(apply)
		}
		if !dec.add(e) {
			break
		}
	}
	if dec != nil {
		if err := dec.wait(); err != nil {
			return zero, err
		}
	}
	if root.version == 0 { // LoadAt bounded before the first event
		return zero, fmt.Errorf("aggregate: load %q: no event within the bound: %w", stream, ErrNotFound)
	}
	if r.cfg.OnLoad != nil {
		st.Version, st.Duration = root.version, time.Since(start)
		r.cfg.OnLoad(st)
	}
	return a, nil
}

func (r *Repository[T]) save(ctx context.Context, c conn, a T, md eventstore.Metadata) error {
	root := a.root()
	if len(root.pending) == 0 {
		return nil
	}
	stream := r.StreamID(root.id)
	events := make([]eventstore.NewEvent, len(root.pending))
	for i, ev := range root.pending {
		ne, err := r.reg.Encode(ev)
		if err != nil {
			return fmt.Errorf("aggregate: save %q: event %d (%T): %w", stream, i, ev, err)
		}
		ne.Metadata = md
		events[i] = ne
	}
	res, err := c.append(ctx, stream, eventstore.Exactly(root.version), events)
	if err != nil {
		return fmt.Errorf("aggregate: save %q: %w", stream, err)
	}
	old := root.version
	root.version, root.pending = res.Version, nil
	if every := r.cfg.SnapshotEvery; every > 0 && res.Version/every > old/every {
		r.snapshot(ctx, c, a, stream, res.Version)
	}
	return nil
}

// snapshot saves a's state at version. It runs after the append returned,
// so it never holds the append back, and it logs its failures instead of
// returning them: the events are what matters, and the next load works
// without the snapshot.
func (r *Repository[T]) snapshot(ctx context.Context, c conn, a T, stream string, version int64) {
	data, err := json.Marshal(a)
	if err == nil {
		err = c.saveSnapshot(ctx, eventstore.Snapshot{StreamID: stream, Version: version, SchemaVersion: r.cfg.SnapshotVersion, Data: data})
	}
	if err != nil {
		r.cfg.Logger.WarnContext(ctx, "aggregate: snapshot not saved", "stream", stream, "version", version, "error", err)
	}
}

// inlineEvents is how many events a load decodes as it reads them before
// it hands decoding to a goroutine of its own. Loads from a snapshot rarely
// get there, and short streams never pay for a goroutine.
const inlineEvents = 256

// decoder decodes and applies a load's events in a goroutine of its own,
// in order, while the loading goroutine reads the next rows.
type decoder struct {
	batches  chan []eventstore.Event
	free     chan []eventstore.Event // decoded batches, for reuse
	done     chan struct{}
	failed   atomic.Bool
	err      error // set by the goroutine before done is closed
	panicked any   // a panic of Apply, raised again by wait in the loader's goroutine
	buf      []eventstore.Event
}

const decodeBatch = 64

func startDecoder(apply func(eventstore.Event) error) *decoder {
	d := &decoder{batches: make(chan []eventstore.Event, 8), free: make(chan []eventstore.Event, 10), done: make(chan struct{})}
	d.buf = make([]eventstore.Event, 0, decodeBatch)
	go func() {
		defer close(d.done)
		for batch := range d.batches {
			if !d.failed.Load() { // else drain, so that the reader never blocks
				d.decode(batch, apply)
			}
			select {
			case d.free <- batch[:0]:
			default:
			}
		}
	}()
	return d
}

// decode applies batch, recording the first error or panic.
func (d *decoder) decode(batch []eventstore.Event, apply func(eventstore.Event) error) {
	defer func() {
		if p := recover(); p != nil {
			d.panicked = p
			d.failed.Store(true)
		}
	}()
	for _, e := range batch {
		if err := apply(e); err != nil {
			d.err = err
			d.failed.Store(true)
			return
		}
	}
}

// add queues e; it returns false once decoding has failed, so that the
// reader can stop.
func (d *decoder) add(e eventstore.Event) bool {
	d.buf = append(d.buf, e)
	if len(d.buf) == decodeBatch {
		d.batches <- d.buf
		select {
		case d.buf = <-d.free:
		default:
			d.buf = make([]eventstore.Event, 0, decodeBatch)
		}
	}
	return !d.failed.Load()
}

// wait decodes what is queued, stops the goroutine and returns the first
// decoding error; a panic of Apply is raised again here, in the loader's
// goroutine, as if the events had been decoded inline.
func (d *decoder) wait() error {
	if len(d.buf) > 0 {
		d.batches <- d.buf
	}
	close(d.batches)
	<-d.done
	if d.panicked != nil {
		panic(d.panicked)
	}
	return d.err
}

// conn runs the store's calls on the pool, or in tx when it is set.
type conn struct {
	store *eventstore.Store
	tx    pgx.Tx
}

func (c conn) readStream(ctx context.Context, stream string, from int64) iter.Seq2[eventstore.Event, error] {
	if c.tx != nil {
		return c.store.ReadStreamTx(ctx, c.tx, stream, from)
	}
	return c.store.ReadStream(ctx, stream, from)
}

func (c conn) loadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, error) {
	if c.tx != nil {
		return c.store.LoadSnapshotTx(ctx, c.tx, stream)
	}
	return c.store.LoadSnapshot(ctx, stream)
}

func (c conn) append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent) (eventstore.AppendResult, error) {
	if c.tx != nil {
		return c.store.AppendTx(ctx, c.tx, stream, expected, events...)
	}
	return c.store.Append(ctx, stream, expected, events...)
}

// saveSnapshot saves snap; in a transaction, behind a savepoint, so that a
// failure rolls back only the snapshot and leaves the transaction usable.
func (c conn) saveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if c.tx == nil {
		return c.store.SaveSnapshot(ctx, snap)
	}
	sp, err := c.tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := c.store.SaveSnapshotTx(ctx, sp, snap); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

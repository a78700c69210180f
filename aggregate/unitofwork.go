package aggregate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/pgtx"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/storeview"
)

// The errors a unit of work retries on, each matched with errors.Is. A
// version conflict matches eventstore.ErrConflict and a refusal for the
// log's order eventstore.ErrOutOfOrder; the two Postgres races have their
// own sentinels here, so that callers need not read SQLSTATEs.
var (
	// ErrDeadlock matches a transaction the server ended to break a
	// deadlock (SQLSTATE 40P01). Strata's own statements in a unit of work
	// cannot cause one (see UnitOfWork); the caller's own writes in
	// Session.Tx can.
	ErrDeadlock = errors.New("aggregate: deadlock detected")
	// ErrSerialization matches a serialization failure (SQLSTATE 40001):
	// a REPEATABLE READ or SERIALIZABLE transaction lost to another.
	ErrSerialization = errors.New("aggregate: serialization failure")
)

// raceError is a Postgres race error matched by its sentinel.
type raceError struct {
	sentinel error
	err      error
}

func (e *raceError) Error() string   { return e.sentinel.Error() + ": " + e.err.Error() }
func (e *raceError) Unwrap() []error { return []error{e.sentinel, e.err} }

// classify reports whether err asks for the whole unit of work to run
// again, and returns it with its sentinel attached for a Postgres race.
// It is the one place the unit of work reads errors.
func classify(err error) (rerun bool, typed error) {
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, eventstore.ErrConflict), errors.Is(err, eventstore.ErrOutOfOrder):
		return true, err
	}
	switch failure.RaceOf(err) {
	case failure.Deadlock:
		if errors.Is(err, ErrDeadlock) {
			return true, err
		}
		return true, &raceError{ErrDeadlock, err}
	case failure.Serialization:
		if errors.Is(err, ErrSerialization) {
			return true, err
		}
		return true, &raceError{ErrSerialization, err}
	}
	return false, err
}

// UnitConfig configures a UnitOfWork. The zero value (or nil) means every
// default.
type UnitConfig struct {
	// MaxAttempts caps how many times Run runs the unit of work; when
	// they are used up, Run returns an *AttemptsError. Default 0: run it
	// again until the context ends.
	MaxAttempts int
	// RetryDelay is the longest wait before the first rerun; each later
	// one may wait twice as long, up to MaxRetryDelay, each wait drawn at
	// random below its bound. Default 1ms.
	RetryDelay time.Duration
	// MaxRetryDelay bounds the waits between runs. Default 100ms.
	MaxRetryDelay time.Duration
	// OnRetry, when set, is called before each rerun with the attempt
	// that failed (1 for the first) and its error, which matches one of
	// eventstore.ErrConflict, eventstore.ErrOutOfOrder, ErrDeadlock or
	// ErrSerialization. For metrics; it must be quick. Default nil.
	OnRetry func(attempt int, err error)
}

// AttemptsError is returned by Run when UnitConfig.MaxAttempts runs all
// lost races. Nothing was written. errors.Is sees the last attempt's error
// (eventstore.ErrConflict, say).
type AttemptsError struct {
	// Attempts is how many times the unit of work ran.
	Attempts int
	// Err is the last attempt's error.
	Err error
}

func (e *AttemptsError) Error() string {
	return fmt.Sprintf("aggregate: unit of work gave up after %d attempts: %v", e.Attempts, e.Err)
}

func (e *AttemptsError) Unwrap() error { return e.Err }

// UnitOfWork changes several aggregates, of one type or of several, in one
// transaction: a transfer debits one account and credits another, and
// either both events are stored or neither is. Create it with
// NewUnitOfWork; it is safe for concurrent use.
//
// Run runs the caller's function with a Session, through which it loads
// aggregates (Get, GetOrNew) and adds new ones (Track); when the function
// returns nil, the events every tracked aggregate raised are appended in
// one transaction, each stream at the version it was loaded at. A race
// lost to another writer — a version conflict, eventstore.ErrOutOfOrder,
// a deadlock or a serialization failure — rolls everything back and runs
// the function again on freshly loaded aggregates, so the function must
// only change aggregates (and write through Session.Tx), never call other
// services.
//
// Deadlocks. Before its first append, a unit of work takes a
// transaction-scoped advisory lock per stream it writes, in a fixed order
// (by the lock's key), and it appends in the order of the stream IDs. So
// two units of work (and pubsub's multi-stream publishes, which also
// write in stream ID order) never wait for each other in a cycle, and a
// unit of work that waited for another's streams begins writing after it:
// it gets a version conflict (and reruns at once) instead of waiting out
// the server's deadlock_timeout or being refused with ErrOutOfOrder. The
// advisory locks take no transaction ID, so they hold back no reader of
// the log.
//
// When to use it, and when not: a unit of work is for an invariant that
// spans a few aggregates and must hold at every commit (money moves
// between two accounts of one bank; stock is reserved as an order is
// placed). Every aggregate it touches is contended by it, so keep the
// set small and the function short. When the steps may happen one after
// another — each aggregate changes in its own transaction and the others
// follow, with compensation when a later step fails, or when a step waits
// for time or another service — use a workflow (a process manager that
// reacts to events) instead: it scales with the number of aggregates and
// keeps each of them its own consistency boundary.
type UnitOfWork struct {
	store *eventstore.Store
	cfg   UnitConfig
}

// NewUnitOfWork returns a UnitOfWork on store. cfg may be nil. It panics
// on a nil store.
func NewUnitOfWork(store *eventstore.Store, cfg *UnitConfig) *UnitOfWork {
	if store == nil {
		panic("aggregate: NewUnitOfWork needs a store")
	}
	var c UnitConfig
	if cfg != nil {
		c = *cfg
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = time.Millisecond
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 100 * time.Millisecond
	}
	c.MaxRetryDelay = max(c.MaxRetryDelay, c.RetryDelay)
	return &UnitOfWork{store: store, cfg: c}
}

// Session is one run of a unit of work: its transaction and the
// aggregates it tracks. It is valid only inside the function given to
// Run, and not safe for concurrent use.
type Session struct {
	store   *eventstore.Store
	tx      pgx.Tx
	members map[string]*member // by stream ID
	done    bool
}

// member is one tracked aggregate, with what saving it takes.
type member struct {
	stream string
	root   *Root
	encode func(ev any) (eventstore.NewEvent, error)
	// saved runs after its events are appended (a due snapshot).
	saved func(ctx context.Context, tx pgx.Tx, version int64)
	any   any // the aggregate, returned again by Get
}

// Tx returns the session's transaction, to write other rows (a read
// model, an outbox of your own) that commit with the events. Do not
// commit or roll it back.
func (s *Session) Tx() pgx.Tx { return s.tx }

// Get loads the aggregate id of repo's type in the session's transaction
// and tracks it: the events it raises are appended when the unit of work
// commits. Loading the same aggregate again returns the same value. An
// aggregate without events returns an error matching ErrNotFound.
func Get[T Aggregate](ctx context.Context, s *Session, repo *Repository[T], id string) (T, error) {
	return get(ctx, s, repo, id, false)
}

// GetOrNew is Get, returning a new aggregate (version 0) when id has no
// events yet, so that one unit of work both creates and changes
// aggregates; its first append then expects no stream.
func GetOrNew[T Aggregate](ctx context.Context, s *Session, repo *Repository[T], id string) (T, error) {
	return get(ctx, s, repo, id, true)
}

func get[T Aggregate](ctx context.Context, s *Session, repo *Repository[T], id string, orNew bool) (T, error) {
	var zero T
	if s.done {
		return zero, errors.New("aggregate: session used after its unit of work ended")
	}
	stream := repo.StreamID(id)
	if m, ok := s.members[stream]; ok {
		a, ok := m.any.(T)
		if !ok {
			return zero, fmt.Errorf("aggregate: stream %q is tracked as %T, not %T", stream, m.any, zero)
		}
		return a, nil
	}
	a, err := repo.load(ctx, conn{store: s.store, tx: s.tx}, id, nil)
	if orNew && errors.Is(err, ErrNotFound) {
		a, err = repo.New(id), nil
	}
	if err != nil {
		return zero, err
	}
	s.track(repo, a)
	return a, nil
}

// Track adds a, an aggregate made by repo.New (or loaded elsewhere in
// the session's transaction), to the session: its pending events are
// appended at commit, expecting its stream at a's version. Tracking a
// stream the session already tracks is an error.
func Track[T Aggregate](s *Session, repo *Repository[T], a T) error {
	if s.done {
		return errors.New("aggregate: session used after its unit of work ended")
	}
	stream := repo.StreamID(a.ID())
	if _, ok := s.members[stream]; ok {
		return fmt.Errorf("aggregate: stream %q is already tracked by this session", stream)
	}
	s.track(repo, a)
	return nil
}

func (s *Session) track(repo interface{ member(a any) *member }, a any) {
	m := repo.member(a)
	s.members[m.stream] = m
}

// member describes a (a T) for a session.
func (r *Repository[T]) member(v any) *member {
	a := v.(T)
	stream := r.StreamID(a.ID())
	return &member{
		stream: stream,
		root:   a.root(),
		any:    a,
		encode: r.reg.Encode,
		saved: func(ctx context.Context, tx pgx.Tx, version int64) {
			if every := r.cfg.SnapshotEvery; every > 0 && version/every > a.root().version/every {
				r.snapshot(ctx, conn{store: r.store, tx: tx}, a, stream, version)
			}
		},
	}
}

// Run runs fn in a transaction with a new Session and, when fn returns
// nil, appends the events of the session's aggregates in that transaction
// and commits. When fn returns an error, nothing is written and that
// error is returned as is. A lost race (see UnitOfWork) runs it all again
// after a short random wait, until it commits, ctx ends, or
// UnitConfig.MaxAttempts is reached (an *AttemptsError). ctx's metadata
// (WithMetadata) and opts go on every event.
//
// Run returns nil exactly when the events are stored. If the connection
// is lost while COMMIT was on its way, Run ends the transaction's server
// process and looks the events up on another connection before it
// answers; only when that cannot be learned it returns an
// *eventstore.AmbiguousError.
func (u *UnitOfWork) Run(ctx context.Context, fn func(ctx context.Context, s *Session) error, opts ...Opts) error {
	md := callMetadata(ctx, opts)
	wait := retry.Full(u.cfg.RetryDelay, u.cfg.MaxRetryDelay)
	var ahead []int32 // the lock keys to take before fn runs
	relocks := 0
	for attempt := 1; ; attempt++ {
		keys, err := u.runOnce(ctx, fn, md, ahead)
		if errors.Is(err, errRelock) {
			// Not a race: this attempt wrote streams it had not locked
			// ahead; rerun at once with all of them locked first. (A
			// function that writes other streams on every run counts
			// these reruns as attempts after a few.)
			if relocks++; relocks <= maxFreeRelocks {
				attempt--
			} else if u.cfg.MaxAttempts > 0 && attempt >= u.cfg.MaxAttempts {
				return &AttemptsError{Attempts: attempt, Err: err}
			}
			ahead = keys
			continue
		}
		rerun, err := classify(err)
		if !rerun {
			return err
		}
		if u.cfg.MaxAttempts > 0 && attempt >= u.cfg.MaxAttempts {
			return &AttemptsError{Attempts: attempt, Err: err}
		}
		if u.cfg.OnRetry != nil {
			u.cfg.OnRetry(attempt, err)
		}
		if len(keys) > 0 && (errors.Is(err, eventstore.ErrConflict) || errors.Is(err, eventstore.ErrOutOfOrder)) {
			// Another writer got to these streams first. Rerun at once,
			// taking their locks before fn loads them: the rerun then
			// waits for any writer of them that holds the locks instead
			// of racing it again.
			ahead = keys
			continue
		}
		if !retry.Sleep(ctx, wait.NextBackOff()) {
			return fmt.Errorf("aggregate: unit of work: %w after %d attempts; last: %w", ctx.Err(), attempt, err)
		}
	}
}

// maxFreeRelocks is how many reruns for a changed set of streams do not
// count as attempts.
const maxFreeRelocks = 4

// errRelock ends an attempt that would write a stream whose lock comes
// before one it took ahead: taking it now could deadlock.
var errRelock = errors.New("aggregate: unit of work: streams to lock changed")

// lockStreamsSQL takes a transaction-scoped advisory lock for each key of
// $2 (sorted by the caller), in the array's order, which is the order a
// function scan of unnest yields, in the two-key space (class $1), which
// never meets the one-key locks other parts of Strata take. It takes no
// transaction ID.
const lockStreamsSQL = `SELECT pg_advisory_xact_lock($1::int4, k) FROM unnest($2::int4[]) AS k`

// lockClass is the first key of the stream locks: "strA" in ASCII.
const lockClass int32 = 0x73747241

// runOnce is one attempt: ahead are the lock keys to take before fn
// runs (sorted). It returns the sorted lock keys of the streams it wrote
// or was about to write.
func (u *UnitOfWork) runOnce(ctx context.Context, fn func(ctx context.Context, s *Session) error, md eventstore.Metadata, ahead []int32) (keys []int32, err error) {
	tx, err := pgtx.Begin(ctx, u.store.Pool(), pgtx.Options{})
	if err != nil {
		return nil, fmt.Errorf("aggregate: unit of work: %w", err)
	}
	s := &Session{store: u.store, tx: tx, members: map[string]*member{}}
	committed := false
	defer func() {
		s.done = true
		if !committed {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if len(ahead) > 0 {
		if _, err := tx.Exec(ctx, lockStreamsSQL, lockClass, ahead); err != nil {
			return nil, fmt.Errorf("aggregate: unit of work: lock streams: %w", err)
		}
	}
	if err := callFn(ctx, fn, s); err != nil {
		return nil, err
	}
	// Encode everything before writing anything: a refused event writes
	// nothing and is not retried.
	type write struct {
		m      *member
		events []eventstore.NewEvent
	}
	var writes []write
	for _, stream := range slices.Sorted(maps.Keys(s.members)) {
		m := s.members[stream]
		if len(m.root.pending) == 0 {
			continue
		}
		events := make([]eventstore.NewEvent, len(m.root.pending))
		for i, ev := range m.root.pending {
			ne, err := m.encode(ev)
			if err != nil {
				return nil, fmt.Errorf("aggregate: unit of work: save %q: event %d (%T): %w", stream, i, ev, err)
			}
			if ne.ID, err = uuid.NewV7(); err != nil {
				return nil, err
			}
			ne.Metadata = md
			events[i] = ne
		}
		writes = append(writes, write{m, events})
	}
	if len(writes) == 0 {
		if err := tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("aggregate: unit of work: commit: %w", err)
		}
		committed = true
		return nil, nil
	}
	for _, w := range writes {
		keys = append(keys, streamKey(storeview.Of(u.store).Schema, w.m.stream))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	switch {
	case len(ahead) > 0:
		// Locks may only be taken in order: a key missing from those taken
		// ahead, but before the last of them, ends the attempt.
		for _, k := range keys {
			if _, found := slices.BinarySearch(ahead, k); !found && k < ahead[len(ahead)-1] {
				return mergeKeys(ahead, keys), errRelock
			}
		}
		if extra := slices.DeleteFunc(slices.Clone(keys), func(k int32) bool { _, found := slices.BinarySearch(ahead, k); return found }); len(extra) > 0 {
			if _, err := tx.Exec(ctx, lockStreamsSQL, lockClass, extra); err != nil {
				return keys, fmt.Errorf("aggregate: unit of work: lock streams: %w", err)
			}
		}
		keys = mergeKeys(ahead, keys)
	case len(keys) > 1:
		if _, err := tx.Exec(ctx, lockStreamsSQL, lockClass, keys); err != nil {
			return keys, fmt.Errorf("aggregate: unit of work: lock streams: %w", err)
		}
	}
	versions := make([]int64, len(writes))
	for i, w := range writes {
		res, err := u.store.AppendTx(ctx, tx, w.m.stream, eventstore.Exactly(w.m.root.version), w.events...)
		if err != nil {
			return keys, fmt.Errorf("aggregate: unit of work: save %q: %w", w.m.stream, err)
		}
		versions[i] = res.Version
		w.m.saved(ctx, tx, res.Version)
	}
	if err := tx.Commit(ctx); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.SeverityUnlocalized != "FATAL" && pgErr.SeverityUnlocalized != "PANIC" {
			return keys, fmt.Errorf("aggregate: unit of work: commit: %w", err)
		}
		committed = true // nothing left to roll back
		first := writes[0]
		if err := u.resolve(ctx, tx.PID(), first.m.stream, first.m.root.version, first.events, err); err != nil {
			return nil, err
		}
	}
	committed = true
	for i, w := range writes {
		w.m.root.version, w.m.root.pending = versions[i], nil
	}
	return keys, nil
}

// mergeKeys returns the sorted union of two sorted key lists.
func mergeKeys(a, b []int32) []int32 {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// callFn runs fn, turning a panic into an error so that the transaction
// rolls back and the caller's goroutine survives.
func callFn(ctx context.Context, fn func(ctx context.Context, s *Session) error, s *Session) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("aggregate: unit of work: function panicked: %v", p)
		}
	}()
	return fn(ctx, s)
}

// resolveTimeout bounds the look-up of a lost COMMIT's outcome.
const resolveTimeout = 5 * time.Second

// resolve learns whether the transaction behind server process pid, whose
// COMMIT got no answer (cause), committed: it ends the process, then reads
// the first written stream after the version it was expected at. The
// transaction wrote all its streams or none, so that stream's next event
// being the first one it wrote says it committed.
func (u *UnitOfWork) resolve(ctx context.Context, pid uint32, stream string, version int64, events []eventstore.NewEvent, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	pace := retry.Backoff(time.Millisecond, 50*time.Millisecond)
	var last error
	for {
		if err := pgtx.End(ctx, u.store.Pool(), pid, resolveTimeout); err != nil {
			last = err
		} else {
			stored, err := u.storedAt(ctx, stream, version+1, events[0].ID)
			if err == nil {
				if stored {
					return nil
				}
				return fmt.Errorf("aggregate: unit of work: connection lost while committing; the events are not stored (checked on another connection): %w", cause)
			}
			last = err
		}
		if !retry.Sleep(ctx, pace.NextBackOff()) {
			ids := make([]uuid.UUID, len(events))
			for i, e := range events {
				ids[i] = e.ID
			}
			return &eventstore.AmbiguousError{StreamID: stream, EventIDs: ids, Err: cause, Resolve: fmt.Errorf("%w (gave up after %s)", last, resolveTimeout)}
		}
	}
}

// storedAt reports whether the event of stream at version has the ID id.
func (u *UnitOfWork) storedAt(ctx context.Context, stream string, version int64, id uuid.UUID) (bool, error) {
	for e, err := range u.store.ReadStream(ctx, stream, version) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return e.ID == id, nil
	}
	return false, nil
}

// streamKey is the advisory lock key of a stream of a store's schema.
func streamKey(schema, stream string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(schema))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(stream))
	return int32(h.Sum32())
}

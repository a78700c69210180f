package eventstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/rawjson"
)

// Append appends events to a stream in one implicit transaction: all of
// them or none. expected is checked in the same statement that inserts the
// events, so a conflict writes nothing and costs no extra round trip.
//
// A conflict returns a *ConflictError (errors.Is(err, ErrConflict)); an
// event that is malformed or refused by the Validator returns an error
// matching ErrInvalidEvent before anything is sent; a stored event ID
// returns a *DuplicateEventError.
//
// Append returns nil exactly when its events are stored, once, and an
// error exactly when they are not. The events' IDs are fixed before the
// statement is sent (a UUIDv7 for a zero NewEvent.ID). When the connection
// is lost after the statement may have reached the server (a network cut,
// a server restart, pgx closing the socket at a context deadline), Append
// finds out on another connection whether the events are stored: it first
// makes sure the server process of the lost connection has ended (it
// terminates it if need be: one that still runs the statement could commit
// it later), then looks the event IDs up. Stored: nil and the result read
// back. Not stored: the connection's error. Only when this cannot be
// learned within Config.ResolveTimeout does Append return an
// *AmbiguousError (errors.Is(err, ErrAmbiguous)), which names the event
// IDs: retrying with those IDs is safe (a stored one returns a
// *DuplicateEventError).
//
// Appends made at the same time by many goroutines are combined into one
// statement and one commit (Config.DisableCombiner), each keeping all of
// the above; an Append made while no other is on its way goes at once.
//
// Each call is a strata.append span with metrics (see package telemetry).
// When ctx carries a valid span context, every event's Metadata.Values is
// given the W3C trace context ("traceparent", "tracestate") unless it has
// a "traceparent" already, so that the relay and consumers continue the
// trace; the events and maps passed in are not modified.
func (s *Store) Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...NewEvent) (AppendResult, error) {
	return s.tracedAppend(ctx, s.pool, streamID, expected, events)
}

// AppendTx is Append inside the caller's transaction, so that the events
// commit together with whatever else tx writes (read-model rows, commands
// handled, …), or not at all. The events become visible to readers when tx
// commits. On a conflict tx is still usable; on other database errors, as
// with any failed statement, tx is aborted.
//
// A stream's versions follow the log's order, which is the order of
// transaction IDs: when a transaction that got its ID after tx did has
// appended to the stream and committed, AppendTx writes nothing and returns
// an *OutOfOrderError (errors.Is(err, ErrOutOfOrder)); roll tx back and run
// it again, as after a serialization failure. It happens only to
// transactions that write before they append to a stream others append to
// at the same moment.
//
// An error from AppendTx means the events are not written in tx. Whether
// they are stored is decided by tx's commit, which is the caller's: a
// commit whose connection is lost has an unknown outcome, and the events'
// IDs (set them in the NewEvents to know them) are what to look up.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected ExpectedVersion, events ...NewEvent) (AppendResult, error) {
	return s.tracedAppend(ctx, tx, streamID, expected, events)
}

// appendArgs holds one append's events in the column-wise form the insert
// statement takes. The types are the ones pgx encodes without reflection or
// detours: a uuid.UUID would go through its driver.Valuer (a string, parsed
// again), a []*string through reflection; empty correlation and causation
// IDs become NULL in the statement.
type appendArgs struct {
	ids      [][16]byte
	types    []string
	versions []int32
	data     [][]byte
	meta     [][]byte
	corr     []string
	caus     []string
	// principal is the context's WithPrincipal, for every event.
	principal string
}

func (s *Store) appendTo(ctx context.Context, q querier, streamID string, expected ExpectedVersion, events []NewEvent) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, fmt.Errorf("eventstore: append to %q: %w", streamID, err)
	}
	a, err := s.prepare(streamID, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	if err := s.seal(ctx, q, streamID, events, a); err != nil {
		return AppendResult{}, err
	}
	if a.principal, err = principalOf(ctx, streamID); err != nil {
		return AppendResult{}, err
	}
	// Append (its own transaction) takes the stream's advisory lock first,
	// so that its transaction ID follows the previous appender's and the
	// stream's versions keep the log's order (see appendsql.go).
	_, inTx := q.(pgx.Tx)
	for attempt := 1; ; attempt++ {
		var res AppendResult
		if p, ok := q.(*pgxpool.Pool); ok {
			res, err = s.pooledAppend(ctx, p, streamID, expected, a)
		} else {
			res, err = s.appendOnce(ctx, q, streamID, expected, a, inTx)
		}
		// Refused for the log's order: only when a transaction of AppendTx
		// with a later ID took the stream while this append waited for it.
		// Append runs in its own transaction and tries again with a new
		// one (each refusal means another writer got through); in the
		// caller's transaction it is the caller's to retry. The attempts
		// are bounded (about 1 s in all): a stream whose last_tx stays
		// ahead of every new transaction means the database's transaction
		// IDs went back (a logical restore into a new cluster), and
		// retrying cannot help.
		if inTx || !errors.Is(err, ErrOutOfOrder) || attempt == maxOrderAttempts {
			return res, err
		}
		if attempt >= 3 && !sleep(ctx, jitter(time.Duration(min(attempt*5, 100))*time.Millisecond)) {
			return res, err
		}
	}
}

// maxOrderAttempts bounds Append's attempts after refusals for the log's
// order.
const maxOrderAttempts = 20

// appendPooled runs Append's statement once on a connection of the pool,
// held explicitly so that a lost connection can be resolved (appendOnce).
// It costs what the pool's own QueryRow does: the same acquire and release.
func (s *Store) appendPooled(ctx context.Context, pool *pgxpool.Pool, streamID string, expected ExpectedVersion, a *appendArgs) (AppendResult, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return AppendResult{}, fmt.Errorf("eventstore: append to %q: %w", streamID, err)
	}
	defer c.Release() // a no-op when appendOnce released it to resolve
	return s.appendOnce(ctx, c, streamID, expected, a, false)
}

// appendOnce runs the append statement once.
func (s *Store) appendOnce(ctx context.Context, q querier, streamID string, expected ExpectedVersion, a *appendArgs, inTx bool) (AppendResult, error) {
	events := len(a.ids)
	notify, claimed, prevNotify := s.shouldNotify()
	shape := appendShape{multi: events > 1, notify: notify}
	args := []any{streamID, int64(events), Category(streamID)}
	if shape.multi {
		args = append(args, a.ids, a.types, a.versions, a.data, a.meta, a.corr, a.caus)
	} else {
		args = append(args, a.ids[0], a.types[0], a.versions[0], a.data[0], a.meta[0], a.corr[0], a.caus[0])
	}
	args = append(args, a.principal)
	switch {
	case expected == Any:
		shape.kind, shape.lock = expectAny, !inTx
	case expected == StreamExists:
		shape.kind, shape.lock = expectExists, !inTx
	case expected == NoStream:
		shape.kind = expectNone
	default:
		shape.kind = expectExactly
		args = append(args, int64(expected))
	}
	var n, pos, tx, version int64
	err := q.QueryRow(ctx, s.sql.append[shape], args...).Scan(&n, &pos, &tx, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		n, err = 0, nil // the single-event statement returns no row on a conflict
	}
	if notify && (err != nil || n == 0) {
		// Nothing was written, so no notification was sent: give the turn
		// back, or the append that follows (a retry after a conflict) would
		// not wake idle subscribers either.
		s.shared.lastNotify.CompareAndSwap(claimed, prevNotify)
	}
	if err != nil {
		if c, ok := q.(*pgxpool.Conn); ok && outcomeUnknown(err) {
			return s.resolveAppend(ctx, c, streamID, a, err)
		}
		return AppendResult{}, s.appendError(ctx, q, streamID, expected, err)
	}
	if n == 0 {
		return AppendResult{}, s.conflict(ctx, q, streamID, expected)
	}
	return AppendResult{Version: version, Position: Position{TxID: uint64(tx), Seq: pos}}, nil
}

// notifySilenceFactor times NotifyInterval is the longest a Store that
// keeps appending goes without a notification.
const notifySilenceFactor = 50

// shouldNotify decides whether this append carries the wake-up NOTIFY,
// across all goroutines: the first append after a pause of NotifyInterval
// does (subscribers may be waiting idle), and under a steady flow of
// appends one every notifySilenceFactor NotifyIntervals does (subscribers
// are reading anyway and poll soon after every read that found events; the
// occasional notification bounds their delay when an open transaction held
// the log back while they backed off). Never more than one per
// NotifyInterval. When it says yes it returns the time it recorded and the
// one it replaced, so that an append that ends up writing nothing can give
// its turn back.
func (s *Store) shouldNotify() (notify bool, now, last int64) {
	if s.cfg.NotifyInterval < 0 {
		return false, 0, 0
	}
	interval := int64(s.cfg.NotifyInterval)
	now = time.Now().UnixNano()
	prev := s.shared.lastAppend.Swap(now)
	last = s.shared.lastNotify.Load()
	if now-last < interval {
		return false, 0, 0
	}
	if now-prev < interval && now-last < interval*notifySilenceFactor {
		return false, 0, 0
	}
	return s.shared.lastNotify.CompareAndSwap(last, now), now, last
}

// prepare checks an append's arguments and lays its events out as columns.
// Nothing is sent to the database when it fails.
func (s *Store) prepare(streamID string, expected ExpectedVersion, events []NewEvent) (*appendArgs, error) {
	bad := func(i int, field, reason string) error {
		return &InvalidEventError{StreamID: streamID, Index: i, Field: field, Reason: reason}
	}
	switch {
	case streamID == "":
		return nil, bad(-1, "stream", "empty stream ID")
	case len(streamID) > MaxStreamIDLength:
		return nil, bad(-1, "stream", fmt.Sprintf("stream ID is %d bytes, longer than %d", len(streamID), MaxStreamIDLength))
	case !validText(streamID):
		return nil, bad(-1, "stream", "stream ID is not valid UTF-8 or contains a NUL byte")
	case expected < 0 && expected != Any && expected != StreamExists:
		return nil, bad(-1, "expected version", fmt.Sprintf("%d is not a version", int64(expected)))
	case len(events) == 0:
		return nil, bad(-1, "events", "no events to append")
	case len(events) > s.cfg.MaxAppendEvents:
		return nil, bad(-1, "events", fmt.Sprintf("%d events in one append, more than the limit of %d", len(events), s.cfg.MaxAppendEvents))
	}
	n := len(events)
	a := &appendArgs{
		ids: make([][16]byte, n), types: make([]string, n), versions: make([]int32, n),
		data: make([][]byte, n), meta: make([][]byte, n), corr: make([]string, n), caus: make([]string, n),
	}
	for i := range events {
		ev := events[i]
		switch {
		case ev.Type == "":
			return nil, bad(i, "type", "empty event type")
		case len(ev.Type) > MaxTypeLength:
			return nil, bad(i, "type", fmt.Sprintf("event type is %d bytes, longer than %d", len(ev.Type), MaxTypeLength))
		case !validText(ev.Type):
			return nil, bad(i, "type", "event type is not valid UTF-8 or contains a NUL byte")
		case ev.SchemaVersion < 0 || ev.SchemaVersion > math.MaxInt32:
			return nil, bad(i, "schema version", fmt.Sprintf("%d is not in [0, %d]", ev.SchemaVersion, math.MaxInt32))
		case len(ev.Data) == 0:
			return nil, bad(i, "data", "empty data: want a JSON document")
		case !rawjson.Valid(ev.Data):
			return nil, bad(i, "data", "not valid JSON")
		case !utf8.Valid(ev.Data):
			return nil, bad(i, "data", "JSON is not valid UTF-8")
		}
		meta, err := encodeMetadata(ev.Metadata)
		if err != nil {
			return nil, bad(i, "metadata", err.Error())
		}
		if size := len(ev.Data) + len(meta) + len(ev.Metadata.CorrelationID) + len(ev.Metadata.CausationID); size > s.cfg.MaxEventSize {
			return nil, bad(i, "size", fmt.Sprintf("event is %d bytes, more than the limit of %d", size, s.cfg.MaxEventSize))
		}
		if ev.ID == uuid.Nil {
			ev.ID, err = uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("eventstore: new event id: %w", err)
			}
		}
		if ev.SchemaVersion == 0 {
			ev.SchemaVersion = 1
		}
		if s.cfg.Validator != nil {
			if err := s.cfg.Validator.Validate(ev); err != nil {
				if !errors.Is(err, ErrInvalidEvent) {
					err = fmt.Errorf("%w: %w", ErrInvalidEvent, err)
				}
				return nil, fmt.Errorf("eventstore: event %d appended to %q: %w", i, streamID, err)
			}
		}
		a.ids[i], a.types[i], a.versions[i], a.data[i], a.meta[i] = ev.ID, ev.Type, int32(ev.SchemaVersion), ev.Data, meta
		a.corr[i], a.caus[i] = ev.Metadata.CorrelationID, ev.Metadata.CausationID
	}
	if n > 1 {
		seen := make(map[[16]byte]struct{}, n)
		for _, id := range a.ids {
			if _, dup := seen[id]; dup {
				return nil, &DuplicateEventError{StreamID: streamID, ID: uuid.UUID(id)}
			}
			seen[id] = struct{}{}
		}
	}
	return a, nil
}

package eventstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Limits that are not configurable: they keep keys inside Postgres' index
// row size.
const (
	// MaxStreamIDLength is the longest stream ID, in bytes.
	MaxStreamIDLength = 512
	// MaxTypeLength is the longest event type name, in bytes.
	MaxTypeLength = 256
	// MaxCorrelationIDLength is the longest correlation or causation ID, in
	// bytes (correlation IDs are indexed).
	MaxCorrelationIDLength = 1024
)

// Config configures a Store. The zero value (or nil) means every default.
type Config struct {
	// Schema is the Postgres schema holding Strata's tables, as created by
	// migrations.Apply. Default "strata".
	Schema string
	// Validator checks every event before an append writes anything. Pass
	// a *schema.Registry. Default nil: events are only checked to be well
	// formed (valid JSON, sizes, names).
	Validator Validator
	// MaxEventSize is the largest event accepted, in bytes of Data plus
	// encoded Metadata. Default 1 MiB.
	MaxEventSize int
	// MaxAppendEvents is the most events one append may carry. Default 10,000.
	MaxAppendEvents int
	// ResolveTimeout bounds how long Append spends, after its connection
	// was lost with the statement possibly on the server, finding out on
	// another connection whether its events are stored. It runs from the
	// failure, whether or not the append's context has ended (a deadline
	// that made pgx close the connection is one way to lose it), so Append
	// may return up to ResolveTimeout after its context ended. When the
	// outcome cannot be learned in that time Append returns an
	// *AmbiguousError. Default 5s.
	ResolveTimeout time.Duration
	// NotifyInterval is the least time between two wake-up notifications
	// this Store sends to subscribers (LISTEN/NOTIFY). An append notifies
	// when it is the first after this Store's appends paused for at least
	// NotifyInterval (subscribers may be idle then), and otherwise at most
	// once per 50 NotifyIntervals while appends keep coming (subscribers
	// are busy reading then, and poll briefly after every read that found
	// events, so the appends in between are seen just as fast). Keeping
	// notifications rare matters: Postgres serialises the commits of
	// notifying transactions and wakes every listening connection of the
	// database for each one, so a NOTIFY in every append would halve
	// throughput under load. Default 2ms; negative disables notifications
	// (subscribers then rely on polling).
	NotifyInterval time.Duration
	// ListenerPing is how long the connection that LISTENs for wake-ups
	// may go without a notification before it is checked with a round
	// trip; a check unanswered within ListenerPing makes it reconnect. A
	// connection can die without either end noticing (a network path or a
	// NAT dropped, a failover), and subscribers would then be left to their
	// PollInterval. Default 10s.
	ListenerPing time.Duration
	// Logger receives the store's rare warnings. Default slog.Default().
	Logger *slog.Logger
	// MeterProvider makes the metrics of appends and of the store's
	// subscriptions (names in package telemetry). Default: the global
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// TracerProvider makes the strata.append spans. Default: the global
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	cfg    Config
	schema string // quoted identifier
	sql    queries
	append map[appendShape]string

	shared *storeShared // shared with the Stores WithValidator makes
	tel    *storeTelemetry
}

// storeShared is the mutable state of a Store, behind a pointer so that the
// Stores WithValidator derives from one another share it: one notification
// rhythm and one wake-up listener per Store and its derivatives.
type storeShared struct {
	lastNotify atomic.Int64 // unix nanos of the last append that notified
	lastAppend atomic.Int64 // unix nanos of the start of the last append
	hub        wakeHub      // this process's subscribers to wake-ups
	horizon    horizonSeen  // the horizon as Horizon last saw it
}

// New returns a Store on pool. The tables must exist (migrations.Apply);
// New does not touch the database.
func New(pool *pgxpool.Pool, cfg *Config) *Store {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Schema == "" {
		c.Schema = "strata"
	}
	if c.MaxEventSize <= 0 {
		c.MaxEventSize = 1 << 20
	}
	if c.MaxAppendEvents <= 0 {
		c.MaxAppendEvents = 10_000
	}
	if c.ResolveTimeout <= 0 {
		c.ResolveTimeout = 5 * time.Second
	}
	if c.NotifyInterval == 0 {
		c.NotifyInterval = 2 * time.Millisecond
	}
	if c.ListenerPing <= 0 {
		c.ListenerPing = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	s := &Store{pool: pool, cfg: c, schema: pgx.Identifier{c.Schema}.Sanitize(), shared: &storeShared{}}
	s.sql = buildQueries(s.schema)
	s.append = buildAppendQueries(s.schema, s.Channel())
	s.tel = newStoreTelemetry(c)
	return s
}

// WithValidator returns a Store on the same pool, schema and tables as s
// that checks appended events with v instead of Config.Validator (nil: no
// validator, events are only checked to be well formed). Everything else
// is shared with s: the configuration, the telemetry, the pacing of
// wake-up notifications and the one LISTEN connection that wakes this
// process's subscriptions. Use it where one component appends events that
// are not of the application's registered types, such as pubsub's
// messages, without opening a second Store.
func (s *Store) WithValidator(v Validator) *Store {
	d := *s // immutable fields and pointers; the mutable state is in shared
	d.cfg.Validator = v
	return &d
}

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the Postgres schema the store's tables live in.
func (s *Store) Schema() string { return s.cfg.Schema }

// Table returns the schema-qualified, quoted name of one of Strata's
// tables, for packages that keep their own tables beside the store's.
func (s *Store) Table(name string) string { return s.schema + "." + pgx.Identifier{name}.Sanitize() }

// Channel is the LISTEN/NOTIFY channel on which appends wake subscribers.
// It fits Postgres' 63-byte limit on names: for a schema name longer than
// 49 bytes it ends in a hash of the name instead of the name.
func (s *Store) Channel() string {
	if ch := "strata_events_" + s.cfg.Schema; len(ch) <= 63 {
		return ch
	}
	return fmt.Sprintf("strata_events_%016x", uint64(appendLockSeed(s.cfg.Schema)))
}

// querier is what the store needs of a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

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
}

func (s *Store) appendTo(ctx context.Context, q querier, streamID string, expected ExpectedVersion, events []NewEvent) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, fmt.Errorf("eventstore: append to %q: %w", streamID, err)
	}
	a, err := s.prepare(streamID, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	// Append (its own transaction) takes the stream's advisory lock first,
	// so that its transaction ID follows the previous appender's and the
	// stream's versions keep the log's order (see buildAppendQueries).
	_, inTx := q.(pgx.Tx)
	for attempt := 1; ; attempt++ {
		var res AppendResult
		if p, ok := q.(*pgxpool.Pool); ok {
			res, err = s.appendPooled(ctx, p, streamID, expected, a)
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
	err := q.QueryRow(ctx, s.append[shape], args...).Scan(&n, &pos, &tx, &version)
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
		case !validJSON(ev.Data):
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

// validText reports whether s can be stored in a Postgres text column.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// validJSON reports whether b is one JSON value (with optional surrounding
// whitespace): what json.Valid reports, including its nesting limit, in a
// single pass without a function call per byte. Checking every event's
// data is on every append's path. Bytes of 0x80 and above are accepted in
// strings here; UTF-8 validity is checked apart.
func validJSON(b []byte) bool {
	const maxDepth = 10000 // as encoding/json
	var stack []byte       // open containers: '{' or '['
	var scratch [32]byte
	stack = scratch[:0]
	i := skipSpace(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxDepth {
				return false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']'
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				if i = jsonMember(b, i); i < 0 {
					return false
				}
			}
			continue
		case c == '"':
			if i = jsonString(b, i); i < 0 {
				return false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i = jsonNumber(b, i); i < 0 {
				return false
			}
		case c == 't':
			if !hasPrefixAt(b, i, "true") {
				return false
			}
			i += 4
		case c == 'f':
			if !hasPrefixAt(b, i, "false") {
				return false
			}
			i += 5
		case c == 'n':
			if !hasPrefixAt(b, i, "null") {
				return false
			}
			i += 4
		default:
			return false
		}
		// After a value: close containers, or go on to the next element.
		for {
			i = skipSpace(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return false
			}
			i = skipSpace(b, i+1)
			if top == '{' {
				if i = jsonMember(b, i); i < 0 {
					return false
				}
			}
			break
		}
	}
}

// jsonMember reads `"key" :` at i and returns where the value starts, or
// -1.
func jsonMember(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = jsonString(b, i); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

// jsonString reads the string starting with the quote at i and returns the
// index after its closing quote, or -1.
func jsonString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// jsonNumber reads the number starting at i and returns the index after
// it, or -1.
func jsonNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefixAt(b []byte, i int, word string) bool {
	return len(b)-i >= len(word) && string(b[i:i+len(word)]) == word
}

// encodeMetadata returns the JSON of m.Values, or nil when there are none.
// Correlation and causation IDs have columns of their own. The output is
// what encoding/json would write (keys sorted, the same escapes), without
// its reflection: it is on every append's path.
func encodeMetadata(m Metadata) ([]byte, error) {
	if !validText(m.CorrelationID) || !validText(m.CausationID) {
		return nil, errors.New("correlation or causation ID is not valid UTF-8 or contains a NUL byte")
	}
	if len(m.CorrelationID) > MaxCorrelationIDLength || len(m.CausationID) > MaxCorrelationIDLength {
		return nil, fmt.Errorf("correlation or causation ID is longer than %d bytes", MaxCorrelationIDLength)
	}
	if len(m.Values) == 0 {
		return nil, nil
	}
	var scratch [8]string
	keys := scratch[:0]
	size := 2
	for k, v := range m.Values {
		if k == "" || !validText(k) || !validText(v) {
			return nil, fmt.Errorf("key %q: keys must be non-empty, and keys and values valid UTF-8 without NUL bytes", k)
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, k)
		out = append(out, ':')
		out = appendJSONString(out, m.Values[k])
	}
	return append(out, '}'), nil
}

// appendJSONString appends s, valid UTF-8, as a JSON string with the
// escapes encoding/json uses by default (HTML characters, U+2028 and
// U+2029 included).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		b := s[i]
		var esc string
		switch {
		case b == '"':
			esc = `\"`
		case b == '\\':
			esc = `\\`
		case b == '\n':
			esc = `\n`
		case b == '\r':
			esc = `\r`
		case b == '\t':
			esc = `\t`
		case b == '\b':
			esc = `\b`
		case b == '\f':
			esc = `\f`
		case b < 0x20 || b == '<' || b == '>' || b == '&':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			start = i + 1
			continue
		case b == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9):
			// U+2028 and U+2029.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[s[i+2]-0xA0])
			i += 2
			start = i + 1
			continue
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// conflict explains an append the statement refused, reading the
// stream's version: a *ConflictError when the expected version does not
// hold, an *OutOfOrderError when it does (the refusal was for the log's
// order: a transaction with a later ID appended to the stream).
func (s *Store) conflict(ctx context.Context, q querier, streamID string, expected ExpectedVersion) error {
	actual, err := s.streamVersion(ctx, q, streamID)
	if err != nil && !errors.Is(err, ErrStreamNotFound) {
		return fmt.Errorf("eventstore: append to %q: read version after conflict: %w", streamID, err)
	}
	holds := false
	switch {
	case expected == Any:
		holds = true
	case expected == StreamExists:
		holds = actual > 0
	case expected >= 0:
		holds = actual == int64(expected)
	}
	if holds {
		return &OutOfOrderError{StreamID: streamID}
	}
	return &ConflictError{StreamID: streamID, Expected: expected, Actual: actual}
}

// appendError translates the database's errors for an append, in one place.
func (s *Store) appendError(ctx context.Context, q querier, streamID string, expected ExpectedVersion, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == "events_event_id_key":
			// Detail reads: Key (event_id)=(0190…) already exists.
			var id uuid.UUID
			if _, v, ok := strings.Cut(pgErr.Detail, ")=("); ok {
				id, _ = uuid.Parse(strings.TrimSuffix(v, ") already exists."))
			}
			return &DuplicateEventError{StreamID: streamID, ID: id}
		case pgErr.Code == "23505" && pgErr.ConstraintName == "events_stream_version_key":
			// Only possible when events were written around the streams table.
			if _, isTx := q.(pgx.Tx); isTx {
				return &ConflictError{StreamID: streamID, Expected: expected, Actual: -1}
			}
			return s.conflict(ctx, q, streamID, expected)
		case strings.HasPrefix(pgErr.Code, "22"), pgErr.Code == "54000":
			// Data exceptions (bad encoding, invalid JSON) and program
			// limits (an index row too large).
			return &InvalidEventError{StreamID: streamID, Index: -1, Field: "events", Reason: pgErr.Message}
		}
	}
	return fmt.Errorf("eventstore: append to %q: %w", streamID, err)
}

// StreamVersion returns the current version of a stream, or
// ErrStreamNotFound.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := checkStreamArg("version of", streamID); err != nil {
		return 0, err
	}
	return s.streamVersion(ctx, s.pool, streamID)
}

func (s *Store) streamVersion(ctx context.Context, q querier, streamID string) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, s.sql.streamVersion, streamID).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrStreamNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: version of %q: %w", streamID, err)
	}
	return v, nil
}

// ReadStream yields a stream's events in version order, starting at
// fromVersion (0 or 1: from the start). Rows are streamed from the server
// as the loop consumes them; breaking out of the loop releases the
// connection. A stream without events yields ErrStreamNotFound once.
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64) iter.Seq2[Event, error] {
	return s.readStream(ctx, s.pool, streamID, fromVersion)
}

// ReadStreamTx is ReadStream inside the caller's transaction.
func (s *Store) ReadStreamTx(ctx context.Context, tx pgx.Tx, streamID string, fromVersion int64) iter.Seq2[Event, error] {
	return s.readStream(ctx, tx, streamID, fromVersion)
}

func (s *Store) readStream(ctx context.Context, q querier, streamID string, fromVersion int64) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if err := checkStreamArg("read", streamID); err != nil {
			yield(Event{}, err)
			return
		}
		rows, err := q.Query(ctx, s.sql.readStream, streamID, fromVersion)
		if err != nil {
			yield(Event{}, fmt.Errorf("eventstore: read %q: %w", streamID, err))
			return
		}
		defer rows.Close()
		var sc eventScanner
		n := 0
		for rows.Next() {
			e, err := sc.scan(rows)
			if err != nil {
				yield(Event{}, fmt.Errorf("eventstore: read %q: %w", streamID, err))
				return
			}
			n++
			if !yield(e, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(Event{}, fmt.Errorf("eventstore: read %q: %w", streamID, err))
			return
		}
		if n == 0 {
			if fromVersion > 1 {
				// The stream may exist with fewer events than fromVersion.
				if _, err := s.streamVersion(ctx, q, streamID); err == nil {
					return
				} else if !errors.Is(err, ErrStreamNotFound) {
					yield(Event{}, err)
					return
				}
			}
			yield(Event{}, fmt.Errorf("eventstore: read %q: %w", streamID, ErrStreamNotFound))
		}
	}
}

// Filter narrows a read of the global log. The zero Filter reads everything.
type Filter struct {
	// Categories keeps only events of streams in these categories (the part
	// of the stream ID before the first '-').
	Categories []string
	// Types keeps only events of these types.
	Types []string
	// Partitions, when above 1, splits the log by a hash of the stream ID
	// into that many partitions, and Partition (0 ≤ Partition < Partitions)
	// keeps one of them. A stream's events are all in one partition, so a
	// reader of one partition still sees each stream in order.
	Partitions int
	// Partition is the partition kept when Partitions > 1.
	Partition int
}

func (f Filter) check() error {
	if f.Partitions > 1 && (f.Partition < 0 || f.Partition >= f.Partitions) {
		return fmt.Errorf("%w: filter: partition %d is not in [0, %d)", ErrInvalidArgument, f.Partition, f.Partitions)
	}
	for _, names := range [][]string{f.Categories, f.Types} {
		for _, n := range names {
			if !validText(n) {
				return fmt.Errorf("%w: filter: category or type %q is not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, n)
			}
		}
	}
	return nil
}

// checkStreamArg refuses a stream ID that cannot be sent as text.
func checkStreamArg(op, streamID string) error {
	if !validText(streamID) {
		return fmt.Errorf("%w: %s %q: stream ID is not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, op, streamID)
	}
	return nil
}

// checkNames refuses subscription names and stream IDs that cannot be
// sent as text.
func checkNames(op string, names ...string) error {
	for _, n := range names {
		if !validText(n) {
			return fmt.Errorf("%w: %s: name %q is not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, op, n)
		}
	}
	return nil
}

// checkLimit refuses a read limit below 1.
func checkLimit(op string, limit int) error {
	if limit <= 0 {
		return fmt.Errorf("%w: %s: limit %d: want a positive limit", ErrInvalidArgument, op, limit)
	}
	return nil
}

// checkPosition refuses a position whose transaction ID is past the
// range of the log's (bigint) transaction IDs: it is no place in the log.
func checkPosition(op string, p Position) error {
	if p.TxID > math.MaxInt64 {
		return fmt.Errorf("%w: %s: position %s: transaction ID past %d", ErrInvalidArgument, op, p, int64(math.MaxInt64))
	}
	return nil
}

// ReadAll returns up to limit events of the global log after the position
// after (the zero Position: from the start), in log order.
//
// It returns only events that no open transaction can precede: an append
// whose transaction is still open holds back the events of every
// transaction that started after it, until it commits or rolls back. So a
// reader that passes each page's Next to the following call sees every
// committed event exactly once, in order, and never a rolled-back one.
func (s *Store) ReadAll(ctx context.Context, after Position, limit int) (Page, error) {
	return s.ReadAllFiltered(ctx, after, limit, Filter{})
}

// ReadAllFiltered is ReadAll keeping only the events f selects.
func (s *Store) ReadAllFiltered(ctx context.Context, after Position, limit int, f Filter) (Page, error) {
	if err := checkLimit("read log", limit); err != nil {
		return Page{}, err
	}
	if err := checkPosition("read log", after); err != nil {
		return Page{}, err
	}
	if err := f.check(); err != nil {
		return Page{}, err
	}
	if len(f.Categories) == 0 && len(f.Types) == 0 && f.Partitions <= 1 {
		var b strings.Builder
		b.WriteString(s.sql.logSelect)
		b.WriteString(" ORDER BY transaction_id, position LIMIT $3")
		rows, err := s.pool.Query(ctx, b.String(), int64(after.TxID), after.Seq, limit)
		if err != nil {
			return Page{}, fmt.Errorf("eventstore: read log after %s: %w", after, err)
		}
		page, err := scanPage(rows, after, limit)
		page.AtEnd = len(page.Events) < limit
		return page, err
	}
	return s.readWindow(ctx, after, limit, f)
}

// filterWindow is how many log entries a filtered read scans, at most, per
// event it may return.
const filterWindow = 8

// readWindow is the filtered read. A plain filtered query would, on every
// call, scan again all the entries the filter skipped after the last match:
// a reader of a rare category would rescan most of the log on each poll.
// So the scan is bounded to a window of limit*filterWindow entries of the
// log, and Next moves to the end of the window when it holds fewer than
// limit matches. Both statements run in one REPEATABLE READ snapshot, sent
// in one round trip, so the window's end and the matches agree.
// Index: events_log_idx for both, a range scan from after.
func (s *Store) readWindow(ctx context.Context, after Position, limit int, f Filter) (Page, error) {
	window := limit * filterWindow
	if limit > math.MaxInt/filterWindow {
		window = math.MaxInt
	}
	var b strings.Builder
	b.WriteString(s.sql.logSelect)
	args := filterSQL(&b, []any{int64(after.TxID), after.Seq, limit, window}, f)
	b.WriteString(` AND (transaction_id, position) <= (SELECT wtx, wpos FROM (` + s.sql.logWindowIn + `) win)
		ORDER BY transaction_id, position LIMIT $3`)
	batch := &pgx.Batch{}
	batch.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	batch.Queue(b.String(), args...)
	batch.Queue(s.sql.logWindow, int64(after.TxID), after.Seq, window)
	batch.Queue(`COMMIT`)
	br := s.pool.SendBatch(ctx, batch)
	page, err := func() (Page, error) {
		if _, err := br.Exec(); err != nil {
			return Page{}, err
		}
		rows, err := br.Query()
		if err != nil {
			return Page{}, err
		}
		page, err := scanPage(rows, after, limit)
		if err != nil {
			return Page{}, err
		}
		var wtx, wpos, scanned int64
		switch err := br.QueryRow().Scan(&wtx, &wpos, &scanned); {
		case errors.Is(err, pgx.ErrNoRows):
			page.AtEnd = true // nothing readable after "after"
		case err != nil:
			return Page{}, err
		case len(page.Events) < limit:
			// Every match up to the window's end is in the page.
			page.Next = Position{TxID: uint64(wtx), Seq: wpos}
			page.AtEnd = scanned < int64(window)
		}
		_, err = br.Exec()
		return page, err
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Page{}, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
	return page, nil
}

// scanPage reads a result set of events into a page after "after".
func scanPage(rows pgx.Rows, after Position, limit int) (Page, error) {
	defer rows.Close()
	page := Page{Events: make([]Event, 0, min(limit, 1024)), Next: after}
	var sc eventScanner
	for rows.Next() {
		e, err := sc.scan(rows)
		if err != nil {
			return Page{}, fmt.Errorf("eventstore: read log after %s: %w", after, err)
		}
		page.Events = append(page.Events, e)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
	if n := len(page.Events); n > 0 {
		page.Next = page.Events[n-1].Position
	}
	return page, nil
}

// filterSQL appends f's conditions (" AND …") to b, numbering their
// parameters after args, and returns args with theirs added.
func filterSQL(b *strings.Builder, args []any, f Filter) []any {
	if len(f.Categories) > 0 {
		args = append(args, f.Categories)
		fmt.Fprintf(b, " AND category = ANY($%d::text[])", len(args))
	}
	if len(f.Types) > 0 {
		args = append(args, f.Types)
		fmt.Fprintf(b, " AND event_type = ANY($%d::text[])", len(args))
	}
	if f.Partitions > 1 {
		args = append(args, f.Partitions, f.Partition)
		fmt.Fprintf(b, " AND %s = $%d", partitionExpr(fmt.Sprintf("$%d", len(args)-1)), len(args))
	}
	return args
}

// partitionExpr is the SQL that maps a stream to a partition: a hash of
// the stream ID modulo n.
func partitionExpr(n string) string {
	return "((hashtext(stream_id)::bigint & 2147483647) % " + n + ")"
}

// eventScanner scans event rows (the columns of eventColumns), reusing its
// scratch space. Use a new one per result set.
//
// Reading the log is the hot path of every subscriber, so rows are decoded
// straight from their wire form when the result set allows it (the columns
// have the expected types, and the numbers, UUID and time arrive in binary,
// which is what pgx asks for with its default statement cache): no
// reflection, and the strings a page repeats (stream IDs, event types,
// metadata keys) are allocated once. Any other result set (the simple
// protocol, say) goes through rows.Scan.
type eventScanner struct {
	tx, pos    int64
	sv         int32
	meta       []byte
	corr, caus *string

	checked bool           // fast and loc are decided for this result set
	fast    bool           // decode RawValues instead of calling rows.Scan
	loc     *time.Location // the connection's timestamptz ScanLocation
	stream  string         // the last stream ID and event type decoded,
	typ     string         // reused while rows repeat them
	keys    []string       // metadata keys decoded so far, reused
	buf     []byte         // scratch for the strings of one row
}

// The columns of eventColumns, in order, with the binary type each must
// have for the fast path.
var eventColumnOIDs = [...]uint32{
	pgtypeInt8, pgtypeInt8, pgtypeUUID, pgtypeText, pgtypeInt8, pgtypeText,
	pgtypeInt4, pgtypeJSON, pgtypeJSON, pgtypeText, pgtypeText, pgtypeTimestamptz,
}

const (
	pgtypeInt4        = 23
	pgtypeInt8        = 20
	pgtypeText        = 25
	pgtypeJSON        = 114
	pgtypeUUID        = 2950
	pgtypeTimestamptz = 1184
)

func (sc *eventScanner) scan(rows pgx.Rows) (Event, error) {
	if !sc.checked {
		sc.check(rows)
	}
	if sc.fast {
		return sc.decode(rows.RawValues())
	}
	var e Event
	sc.meta, sc.corr, sc.caus = nil, nil, nil
	err := rows.Scan(&sc.pos, &sc.tx, &e.ID, &e.StreamID, &e.Version, &e.Type, &sc.sv, &e.Data, &sc.meta, &sc.corr, &sc.caus, &e.RecordedAt)
	if err != nil {
		return Event{}, err
	}
	return sc.finish(e)
}

// check decides whether this result set can be decoded from raw values.
func (sc *eventScanner) check(rows pgx.Rows) {
	sc.checked = true
	fields := rows.FieldDescriptions()
	if len(fields) != len(eventColumnOIDs) {
		return
	}
	for i, f := range fields {
		oid := eventColumnOIDs[i]
		if f.DataTypeOID != oid {
			return
		}
		// text and json are the same bytes in either format; pgx asks for
		// them as text.
		if f.Format != pgx.BinaryFormatCode && oid != pgtypeText && oid != pgtypeJSON {
			return
		}
	}
	conn := rows.Conn()
	if conn == nil {
		return
	}
	if t, ok := conn.TypeMap().TypeForOID(pgtypeTimestamptz); ok {
		if c, ok := t.Codec.(*pgtype.TimestamptzCodec); ok {
			sc.loc = c.ScanLocation
		} else {
			return // a custom codec: let it decode
		}
	}
	sc.fast = true
}

// decode builds an event from one row's raw values (binary numbers, UUID
// and time; text and JSON as their bytes). NULL is only allowed where the
// column allows it.
func (sc *eventScanner) decode(v [][]byte) (Event, error) {
	if len(v) != len(eventColumnOIDs) {
		return Event{}, fmt.Errorf("eventstore: event row has %d columns, want %d", len(v), len(eventColumnOIDs))
	}
	var e Event
	for i, n := range [...]int{0: 8, 1: 8, 2: 16, 4: 8, 6: 4, 11: 8} {
		if n > 0 && len(v[i]) != n {
			return Event{}, fmt.Errorf("eventstore: event row: column %d is %d bytes, want %d", i, len(v[i]), n)
		}
	}
	if v[3] == nil || v[5] == nil || v[7] == nil {
		return Event{}, errors.New("eventstore: event row: NULL in a NOT NULL column")
	}
	e.Position = Position{TxID: binary.BigEndian.Uint64(v[1]), Seq: int64(binary.BigEndian.Uint64(v[0]))}
	e.ID = uuid.UUID(v[2])
	if string(v[3]) != sc.stream {
		sc.stream = string(v[3])
	}
	e.StreamID = sc.stream
	e.Version = int64(binary.BigEndian.Uint64(v[4]))
	if string(v[5]) != sc.typ {
		sc.typ = string(v[5])
	}
	e.Type = sc.typ
	e.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[6])))
	e.Data = append(make([]byte, 0, len(v[7])), v[7]...)
	t, err := decodeTimestamptz(v[11], sc.loc)
	if err != nil {
		return Event{}, fmt.Errorf("eventstore: event %s: recorded_at: %w", e.ID, err)
	}
	e.RecordedAt = t

	// The correlation and causation IDs and the metadata pairs share one
	// string allocation.
	if v[8] == nil && v[9] == nil && v[10] == nil {
		return e, nil
	}
	sc.buf = append(append(append(sc.buf[:0], v[9]...), v[10]...), v[8]...)
	all := string(sc.buf)
	corr, rest := all[:len(v[9])], all[len(v[9]):]
	caus, meta := rest[:len(v[10])], rest[len(v[10]):]
	e.Metadata.CorrelationID, e.Metadata.CausationID = corr, caus
	if len(meta) > 0 {
		if e.Metadata.Values, err = sc.decodeMetadata(meta); err != nil {
			return Event{}, fmt.Errorf("eventstore: event %s: metadata: %w", e.ID, err)
		}
	}
	return e, nil
}

// decodeTimestamptz decodes a binary timestamptz as pgx does.
func decodeTimestamptz(b []byte, loc *time.Location) (time.Time, error) {
	const y2k = 946_684_800 * 1_000_000 // microseconds from 1970 to 2000
	us := int64(binary.BigEndian.Uint64(b))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, errors.New("cannot scan infinity into time.Time")
	}
	t := time.Unix(y2k/1_000_000+us/1_000_000, (y2k%1_000_000*1_000)+(us%1_000_000*1_000))
	if loc != nil {
		t = t.In(loc)
	}
	return t, nil
}

// finish fills in the parts of e scanned into the scanner's scratch space.
func (sc *eventScanner) finish(e Event) (Event, error) {
	e.Position = Position{TxID: uint64(sc.tx), Seq: sc.pos}
	e.SchemaVersion = int(sc.sv)
	if sc.corr != nil {
		e.Metadata.CorrelationID = *sc.corr
	}
	if sc.caus != nil {
		e.Metadata.CausationID = *sc.caus
	}
	if len(sc.meta) > 0 {
		var err error
		if e.Metadata.Values, err = sc.decodeMetadata(string(sc.meta)); err != nil {
			return Event{}, fmt.Errorf("event %s: metadata: %w", e.ID, err)
		}
	}
	return e, nil
}

// decodeMetadata reads the metadata column: a JSON object of strings, as
// encodeMetadata writes it. Keys and values without escapes are taken as
// substrings of doc, and keys are shared between events; anything else
// (escapes, spaces, other value types) is left to encoding/json.
func (sc *eventScanner) decodeMetadata(doc string) (map[string]string, error) {
	if m, ok := sc.decodeSimpleMetadata(doc); ok {
		return m, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeSimpleMetadata parses {"k":"v",...} without whitespace or escapes.
// It returns false for anything else, including invalid JSON.
func (sc *eventScanner) decodeSimpleMetadata(doc string) (map[string]string, bool) {
	if len(doc) < 2 || doc[0] != '{' || doc[len(doc)-1] != '}' {
		return nil, false
	}
	n := strings.Count(doc, `":"`)
	if n == 0 {
		return map[string]string{}, doc == "{}"
	}
	m := make(map[string]string, n)
	rest := doc[1:]
	for {
		k, r, ok := simpleJSONString(rest)
		if !ok || len(r) == 0 || r[0] != ':' {
			return nil, false
		}
		v, r, ok := simpleJSONString(r[1:])
		if !ok || len(r) == 0 {
			return nil, false
		}
		m[sc.key(k)] = v
		if r[0] == '}' {
			if len(r) != 1 {
				return nil, false
			}
			return m, true
		}
		if r[0] != ',' {
			return nil, false
		}
		rest = r[1:]
	}
}

// key returns k, as a string already decoded when there is one.
func (sc *eventScanner) key(k string) string {
	for _, seen := range sc.keys {
		if seen == k {
			return seen
		}
	}
	if len(sc.keys) < 16 {
		sc.keys = append(sc.keys, strings.Clone(k))
		return sc.keys[len(sc.keys)-1]
	}
	return k
}

// simpleJSONString reads a JSON string without escapes at the start of s,
// returning its contents and what follows it.
func simpleJSONString(s string) (str, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[1:i], s[i+1:], true
		case c == '\\' || c < 0x20:
			return "", "", false
		}
	}
	return "", "", false
}

// SaveSnapshot stores snap as the stream's latest snapshot, unless a
// snapshot of a later version is already stored.
func (s *Store) SaveSnapshot(ctx context.Context, snap Snapshot) error {
	return s.saveSnapshot(ctx, s.pool, snap)
}

// SaveSnapshotTx is SaveSnapshot inside the caller's transaction.
func (s *Store) SaveSnapshotTx(ctx context.Context, tx pgx.Tx, snap Snapshot) error {
	return s.saveSnapshot(ctx, tx, snap)
}

func (s *Store) saveSnapshot(ctx context.Context, q querier, snap Snapshot) error {
	if snap.StreamID == "" || snap.Version <= 0 || snap.Data == nil {
		return &InvalidEventError{StreamID: snap.StreamID, Index: -1, Field: "snapshot", Reason: "want a stream ID, a positive version and data"}
	}
	if len(snap.StreamID) > MaxStreamIDLength || !validText(snap.StreamID) {
		return &InvalidEventError{StreamID: snap.StreamID, Index: -1, Field: "snapshot", Reason: fmt.Sprintf("stream ID is longer than %d bytes, not valid UTF-8 or contains a NUL byte", MaxStreamIDLength)}
	}
	if snap.SchemaVersion < 0 || snap.SchemaVersion > math.MaxInt32 {
		return &InvalidEventError{StreamID: snap.StreamID, Index: -1, Field: "snapshot", Reason: fmt.Sprintf("schema version %d is not in [0, %d]", snap.SchemaVersion, math.MaxInt32)}
	}
	if _, err := q.Exec(ctx, s.sql.saveSnapshot, snap.StreamID, snap.Version, snap.SchemaVersion, snap.Data); err != nil {
		// Migration 0009's check: a snapshot is of a version the stream has.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23514" && strings.HasPrefix(pgErr.Message, "strata: snapshot") {
			return &InvalidEventError{StreamID: snap.StreamID, Index: -1, Field: "snapshot", Reason: fmt.Sprintf("version %d: the stream has no such version", snap.Version)}
		}
		return fmt.Errorf("eventstore: save snapshot of %q: %w", snap.StreamID, err)
	}
	return nil
}

// LoadSnapshot returns the stream's latest snapshot, or ErrSnapshotNotFound.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string) (Snapshot, error) {
	return s.loadSnapshot(ctx, s.pool, streamID)
}

// LoadSnapshotTx is LoadSnapshot inside the caller's transaction.
func (s *Store) LoadSnapshotTx(ctx context.Context, tx pgx.Tx, streamID string) (Snapshot, error) {
	return s.loadSnapshot(ctx, tx, streamID)
}

func (s *Store) loadSnapshot(ctx context.Context, q querier, streamID string) (Snapshot, error) {
	if err := checkStreamArg("load snapshot of", streamID); err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{StreamID: streamID}
	var sv int32
	err := q.QueryRow(ctx, s.sql.loadSnapshot, streamID).Scan(&snap.Version, &sv, &snap.Data, &snap.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Snapshot{}, ErrSnapshotNotFound
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("eventstore: load snapshot of %q: %w", streamID, err)
	}
	snap.SchemaVersion = int(sv)
	return snap, nil
}

package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Limits that are not configurable: they keep keys inside Postgres' index
// row size.
const (
	// MaxStreamIDLength is the longest stream ID, in bytes.
	MaxStreamIDLength = 512
	// MaxTypeLength is the longest event type name, in bytes.
	MaxTypeLength = 256
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
	// NotifyInterval is the least time between two wake-up notifications
	// this Store sends to subscribers (LISTEN/NOTIFY). An append notifies
	// only when the last notification is older than this; subscribers poll
	// briefly after every wake-up, so the appends in between are seen just
	// as fast. Coalescing matters: Postgres serialises the commits of
	// notifying transactions, so a NOTIFY in every append would halve
	// throughput under load. Default 2ms; negative disables notifications
	// (subscribers then rely on polling).
	NotifyInterval time.Duration
	// Logger receives the store's rare warnings. Default slog.Default().
	Logger *slog.Logger
}

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	cfg    Config
	schema string // quoted identifier
	sql    queries
	append map[appendShape]string

	lastNotify atomic.Int64 // unix nanos of the last append that notified
	hub        wakeHub      // this process's subscribers to wake-ups
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
	if c.NotifyInterval == 0 {
		c.NotifyInterval = 2 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	s := &Store{pool: pool, cfg: c, schema: pgx.Identifier{c.Schema}.Sanitize()}
	s.sql = buildQueries(s.schema)
	s.append = buildAppendQueries(s.schema, s.Channel())
	return s
}

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the Postgres schema the store's tables live in.
func (s *Store) Schema() string { return s.cfg.Schema }

// Table returns the schema-qualified, quoted name of one of Strata's
// tables, for packages that keep their own tables beside the store's.
func (s *Store) Table(name string) string { return s.schema + "." + pgx.Identifier{name}.Sanitize() }

// Channel is the LISTEN/NOTIFY channel on which appends wake subscribers.
func (s *Store) Channel() string { return "strata_events_" + s.cfg.Schema }

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
func (s *Store) Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...NewEvent) (AppendResult, error) {
	return s.appendTo(ctx, s.pool, streamID, expected, events)
}

// AppendTx is Append inside the caller's transaction, so that the events
// commit together with whatever else tx writes (read-model rows, commands
// handled, …), or not at all. The events become visible to readers when tx
// commits. On a conflict tx is still usable; on other database errors, as
// with any failed statement, tx is aborted.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected ExpectedVersion, events ...NewEvent) (AppendResult, error) {
	return s.appendTo(ctx, tx, streamID, expected, events)
}

// appendArgs holds one append's events in the column-wise form the insert
// statement takes.
type appendArgs struct {
	ids      []uuid.UUID
	types    []string
	versions []int32
	data     [][]byte
	meta     [][]byte
	corr     []*string
	caus     []*string
}

func (s *Store) appendTo(ctx context.Context, q querier, streamID string, expected ExpectedVersion, events []NewEvent) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, fmt.Errorf("eventstore: append to %q: %w", streamID, err)
	}
	a, err := s.prepare(streamID, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	shape := appendShape{multi: len(events) > 1, notify: s.shouldNotify()}
	args := []any{streamID, int64(len(events)), Category(streamID)}
	if shape.multi {
		args = append(args, a.ids, a.types, a.versions, a.data, a.meta, a.corr, a.caus)
	} else {
		args = append(args, a.ids[0], a.types[0], a.versions[0], a.data[0], a.meta[0], a.corr[0], a.caus[0])
	}
	switch {
	case expected == Any:
		shape.kind = expectAny
	case expected == StreamExists:
		shape.kind = expectExists
	case expected == NoStream:
		shape.kind = expectNone
	default:
		shape.kind = expectExactly
		args = append(args, int64(expected))
	}
	var n, pos, tx, version int64
	err = q.QueryRow(ctx, s.append[shape], args...).Scan(&n, &pos, &tx, &version)
	if err != nil {
		return AppendResult{}, s.appendError(ctx, q, streamID, expected, err)
	}
	if n == 0 {
		return AppendResult{}, s.conflict(ctx, q, streamID, expected)
	}
	return AppendResult{Version: version, Position: Position{TxID: uint64(tx), Seq: pos}}, nil
}

// shouldNotify decides whether this append carries the wake-up NOTIFY:
// at most one append per NotifyInterval does, across all goroutines.
func (s *Store) shouldNotify() bool {
	if s.cfg.NotifyInterval < 0 {
		return false
	}
	now := time.Now().UnixNano()
	last := s.lastNotify.Load()
	if now-last < int64(s.cfg.NotifyInterval) {
		return false
	}
	return s.lastNotify.CompareAndSwap(last, now)
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
		ids: make([]uuid.UUID, n), types: make([]string, n), versions: make([]int32, n),
		data: make([][]byte, n), meta: make([][]byte, n), corr: make([]*string, n), caus: make([]*string, n),
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
		case ev.SchemaVersion < 0:
			return nil, bad(i, "schema version", fmt.Sprintf("%d is negative", ev.SchemaVersion))
		case len(ev.Data) == 0:
			return nil, bad(i, "data", "empty data: want a JSON document")
		case !json.Valid(ev.Data):
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
		a.corr[i], a.caus[i] = nullable(ev.Metadata.CorrelationID), nullable(ev.Metadata.CausationID)
	}
	if n > 1 {
		seen := make(map[uuid.UUID]struct{}, n)
		for _, id := range a.ids {
			if _, dup := seen[id]; dup {
				return nil, &DuplicateEventError{StreamID: streamID, ID: id}
			}
			seen[id] = struct{}{}
		}
	}
	return a, nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// validText reports whether s can be stored in a Postgres text column.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// encodeMetadata returns the JSON of m.Values, or nil when there are none.
// Correlation and causation IDs have columns of their own.
func encodeMetadata(m Metadata) ([]byte, error) {
	if !validText(m.CorrelationID) || !validText(m.CausationID) {
		return nil, errors.New("correlation or causation ID is not valid UTF-8 or contains a NUL byte")
	}
	if len(m.Values) == 0 {
		return nil, nil
	}
	for k, v := range m.Values {
		if k == "" || !validText(k) || !validText(v) {
			return nil, fmt.Errorf("key %q: keys must be non-empty, and keys and values valid UTF-8 without NUL bytes", k)
		}
	}
	return json.Marshal(m.Values)
}

// conflict builds the *ConflictError for an append whose expected version
// did not hold, reading the stream's actual version for the message.
func (s *Store) conflict(ctx context.Context, q querier, streamID string, expected ExpectedVersion) error {
	actual, err := s.streamVersion(ctx, q, streamID)
	if err != nil && !errors.Is(err, ErrStreamNotFound) {
		return fmt.Errorf("eventstore: append to %q: read version after conflict: %w", streamID, err)
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
		return fmt.Errorf("eventstore: filter: partition %d is not in [0, %d)", f.Partition, f.Partitions)
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
	if limit <= 0 {
		return Page{}, fmt.Errorf("eventstore: read log: limit %d: want a positive limit", limit)
	}
	if err := f.check(); err != nil {
		return Page{}, err
	}
	sql, args := s.logQuery(after, limit, f)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
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

// logQuery builds the gap-safe read of the log for a filter.
//
// Shape and reasoning: rows are ordered by (transaction_id, position) and
// only rows with transaction_id below the xmin of this statement's own
// snapshot are returned. Every transaction below xmin has ended, and any
// transaction that writes later gets an ID at or above xmin, so nothing can
// ever appear before the last row returned. No timeouts, no locks.
// Index: events_log_idx (transaction_id, position), a range scan from the
// checkpoint; filters are applied to the rows the scan meets.
func (s *Store) logQuery(after Position, limit int, f Filter) (string, []any) {
	var b strings.Builder
	b.WriteString(s.sql.logSelect)
	args := filterSQL(&b, []any{int64(after.TxID), after.Seq, limit}, f)
	b.WriteString(" ORDER BY transaction_id, position LIMIT $3")
	return b.String(), args
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

// eventScanner scans event rows, reusing its scratch space.
type eventScanner struct {
	tx, pos    int64
	sv         int32
	meta       []byte
	corr, caus *string
}

func (sc *eventScanner) scan(rows pgx.Rows) (Event, error) {
	var e Event
	sc.meta, sc.corr, sc.caus = nil, nil, nil
	err := rows.Scan(&sc.pos, &sc.tx, &e.ID, &e.StreamID, &e.Version, &e.Type, &sc.sv, &e.Data, &sc.meta, &sc.corr, &sc.caus, &e.RecordedAt)
	if err != nil {
		return Event{}, err
	}
	return sc.finish(e)
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
		if err := json.Unmarshal(sc.meta, &e.Metadata.Values); err != nil {
			return Event{}, fmt.Errorf("event %s: metadata: %w", e.ID, err)
		}
	}
	return e, nil
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
	if _, err := q.Exec(ctx, s.sql.saveSnapshot, snap.StreamID, snap.Version, snap.SchemaVersion, snap.Data); err != nil {
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

package eventstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The columns of an event row, declared once: the constants are their
// order, eventColumnDefs their names and wire types. Every query of events
// selects eventColumns ({event_columns}), and eventScanner reads rows by
// the constants; changing a column here changes all of them.
const (
	colPosition = iota
	colTxID
	colEventID
	colStreamID
	colVersion
	colType
	colSchemaVersion
	colData
	colMetadata
	colCorrelationID
	colCausationID
	colRecordedAt
	numEventColumns
)

// eventColumnDef is a column of an event row: its name, the type it must
// have for the fast path, and its size in binary (0: variable, and NULL
// allowed unless notNull).
type eventColumnDef struct {
	name    string
	oid     uint32
	size    int
	notNull bool
}

var eventColumnDefs = [numEventColumns]eventColumnDef{
	colPosition:      {"position", pgtype.Int8OID, 8, true},
	colTxID:          {"transaction_id", pgtype.Int8OID, 8, true},
	colEventID:       {"event_id", pgtype.UUIDOID, 16, true},
	colStreamID:      {"stream_id", pgtype.TextOID, 0, true},
	colVersion:       {"version", pgtype.Int8OID, 8, true},
	colType:          {"event_type", pgtype.TextOID, 0, true},
	colSchemaVersion: {"schema_version", pgtype.Int4OID, 4, true},
	colData:          {"data", pgtype.JSONOID, 0, true},
	colMetadata:      {"metadata", pgtype.JSONOID, 0, false},
	colCorrelationID: {"correlation_id", pgtype.TextOID, 0, false},
	colCausationID:   {"causation_id", pgtype.TextOID, 0, false},
	colRecordedAt:    {"recorded_at", pgtype.TimestamptzOID, 8, true},
}

// eventColumns is the SQL list of the columns of an event row, in order.
var eventColumns = func() string {
	names := make([]string, len(eventColumnDefs))
	for i, c := range eventColumnDefs {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}()

// eventScanner scans event rows (the columns of eventColumns), reusing its
// scratch space. Use a new one per result set.
//
// Reading the log is the hot path of every subscriber, so rows are decoded
// straight from their wire form when the result set allows it (the columns
// have the expected types, and the numbers and UUID arrive in binary, which
// is what pgx asks for with its default statement cache): no reflection,
// and the strings a page repeats (stream IDs, event types, metadata keys)
// are allocated once. The time is decoded by pgx's own plan for the
// connection's timestamptz codec. Any other result set (the simple
// protocol, say) goes through rows.Scan.
type eventScanner struct {
	tx, pos    int64
	sv         int32
	meta       []byte
	corr, caus *string

	checked    bool            // fast and recordedAt are decided for this result set
	fast       bool            // decode RawValues instead of calling rows.Scan
	timePlan   pgtype.ScanPlan // the connection's plan for recorded_at
	recordedAt time.Time       // its target (a field: no allocation)
	stream     string          // the last stream ID and event type decoded,
	typ        string          // reused while rows repeat them
	keys       []string        // metadata keys decoded so far, reused
	buf        []byte          // scratch for the strings of one row
}

// scan reads the next row: lead's columns, then an event's. Rows with
// lead columns go through rows.Scan.
func (sc *eventScanner) scan(rows pgx.Rows, lead ...any) (Event, error) {
	if !sc.checked {
		sc.check(rows)
	}
	if sc.fast && len(lead) == 0 {
		return sc.decode(rows.RawValues())
	}
	var e Event
	sc.meta, sc.corr, sc.caus = nil, nil, nil
	var dst [numEventColumns]any
	dst[colPosition], dst[colTxID], dst[colEventID], dst[colStreamID] = &sc.pos, &sc.tx, &e.ID, &e.StreamID
	dst[colVersion], dst[colType], dst[colSchemaVersion], dst[colData] = &e.Version, &e.Type, &sc.sv, &e.Data
	dst[colMetadata], dst[colCorrelationID], dst[colCausationID], dst[colRecordedAt] = &sc.meta, &sc.corr, &sc.caus, &e.RecordedAt
	if err := rows.Scan(append(lead, dst[:]...)...); err != nil {
		return Event{}, err
	}
	return sc.finish(e)
}

// check decides whether this result set can be decoded from raw values.
func (sc *eventScanner) check(rows pgx.Rows) {
	sc.checked = true
	fields := rows.FieldDescriptions()
	if len(fields) != numEventColumns {
		return
	}
	for i, f := range fields {
		c := eventColumnDefs[i]
		// Text and JSON are the same bytes in either format; pgx asks
		// for them as text.
		if f.DataTypeOID != c.oid || f.Format != pgx.BinaryFormatCode && c.size > 0 {
			return
		}
	}
	conn := rows.Conn()
	if conn == nil {
		return
	}
	sc.timePlan = conn.TypeMap().PlanScan(pgtype.TimestamptzOID, pgx.BinaryFormatCode, &time.Time{})
	sc.fast = true
}

// decode builds an event from one row's raw values (binary numbers, UUID
// and time; text and JSON as their bytes). NULL is only allowed where the
// column allows it.
func (sc *eventScanner) decode(v [][]byte) (Event, error) {
	if len(v) != numEventColumns {
		return Event{}, fmt.Errorf("eventstore: event row has %d columns, want %d", len(v), numEventColumns)
	}
	for i, c := range eventColumnDefs {
		if c.size > 0 && len(v[i]) != c.size {
			return Event{}, fmt.Errorf("eventstore: event row: column %d is %d bytes, want %d", i, len(v[i]), c.size)
		}
		if c.notNull && v[i] == nil {
			return Event{}, errors.New("eventstore: event row: NULL in a NOT NULL column")
		}
	}
	var e Event
	e.Position = Position{TxID: binary.BigEndian.Uint64(v[colTxID]), Seq: int64(binary.BigEndian.Uint64(v[colPosition]))}
	e.ID = uuid.UUID(v[colEventID])
	if string(v[colStreamID]) != sc.stream {
		sc.stream = string(v[colStreamID])
	}
	e.StreamID = sc.stream
	e.Version = int64(binary.BigEndian.Uint64(v[colVersion]))
	if string(v[colType]) != sc.typ {
		sc.typ = string(v[colType])
	}
	e.Type = sc.typ
	e.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[colSchemaVersion])))
	e.Data = append(make([]byte, 0, len(v[colData])), v[colData]...)
	if err := sc.timePlan.Scan(v[colRecordedAt], &sc.recordedAt); err != nil {
		return Event{}, fmt.Errorf("eventstore: event %s: recorded_at: %w", e.ID, err)
	}
	e.RecordedAt = sc.recordedAt

	// The correlation and causation IDs and the metadata pairs share one
	// string allocation.
	meta, corr, caus := v[colMetadata], v[colCorrelationID], v[colCausationID]
	if meta == nil && corr == nil && caus == nil {
		return e, nil
	}
	sc.buf = append(append(append(sc.buf[:0], corr...), caus...), meta...)
	all := string(sc.buf)
	e.Metadata.CorrelationID, all = all[:len(corr)], all[len(corr):]
	e.Metadata.CausationID, all = all[:len(caus)], all[len(caus):]
	if len(all) > 0 {
		var err error
		if e.Metadata.Values, err = sc.decodeMetadata(all, meta); err != nil {
			return Event{}, fmt.Errorf("eventstore: event %s: metadata: %w", e.ID, err)
		}
	}
	return e, nil
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
		if e.Metadata.Values, err = sc.decodeMetadata(string(sc.meta), sc.meta); err != nil {
			return Event{}, fmt.Errorf("event %s: metadata: %w", e.ID, err)
		}
	}
	return e, nil
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

// scanEvents reads a result set of event rows, passing each event to
// yield until it returns false, and closes rows.
func scanEvents(rows pgx.Rows, yield func(Event) bool) error {
	defer rows.Close()
	var sc eventScanner
	for rows.Next() {
		e, err := sc.scan(rows)
		if err != nil {
			return err
		}
		if !yield(e) {
			return nil
		}
	}
	return rows.Err()
}

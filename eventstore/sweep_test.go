package eventstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/migrations"
)

// Bad input, swept, not sampled (promise 5): every argument a caller can
// pass to the store goes through its whole range — zero, negative, huge,
// every length around the limits in runes of 1 to 4 bytes, every byte
// value, JSON at the edges of what Postgres reads — and each value either
// gets a typed error naming the argument with nothing written, or round-
// trips byte for byte.

// runeWidths are runes of 1, 2, 3 and 4 bytes in UTF-8. Cutting a run of
// them at any byte length gives valid text or a split rune (invalid).
var runeWidths = []string{"a", "é", "€", "😀"}

// textOfLen returns n bytes of repeated r, which may end in a split rune.
func textOfLen(r string, n int) string {
	return strings.Repeat(r, n/len(r)+1)[:n]
}

// lengths returns 0..70 and the lengths around limit.
func lengths(limit int) []int {
	var out []int
	for n := range 71 {
		out = append(out, n)
	}
	for n := limit - 3; n <= limit+3; n++ {
		if n > 70 {
			out = append(out, n)
		}
	}
	return out
}

// everyByte returns "a" + b + "z" for every byte value b.
func everyByte() []string {
	out := make([]string, 256)
	for b := range 256 {
		out[b] = "a" + string([]byte{byte(b)}) + "z"
	}
	return out
}

// validPGText reports whether s can be stored as Postgres text.
func validPGText(s string) bool { return utf8.ValidString(s) && !strings.Contains(s, "\x00") }

type sweep struct {
	t   *testing.T
	db  *pgtest.DB
	ctx context.Context
}

// counts fingerprints every table the store writes, to prove that a
// refused call wrote nothing.
func (sw *sweep) counts() string {
	sw.t.Helper()
	var out string
	// The log's last position (an index lookup) moves with any insert.
	q := `SELECT format('events=%s streams=%s snapshots=%s subscriptions=%s dead_letters=%s versions=%s',
		(SELECT max(position) FROM {s}.events), (SELECT count(*) FROM {s}.streams),
		(SELECT count(*) FROM {s}.snapshots), (SELECT count(*) || '/' || coalesce(md5(string_agg(position_tx || '/' || position_seq, ',' ORDER BY name, partition)), '') FROM {s}.subscriptions),
		(SELECT count(*) FROM {s}.dead_letters), (SELECT coalesce(sum(version), 0) FROM {s}.streams))`
	q = strings.ReplaceAll(q, "{s}", pgx.Identifier{sw.db.Schema}.Sanitize())
	if err := sw.db.Pool.QueryRow(sw.ctx, q).Scan(&out); err != nil {
		sw.t.Fatalf("count rows: %v", err)
	}
	return out
}

// refused checks err against target, that its message names what, and
// that the tables are as before.
func (sw *sweep) refused(name string, err error, target error, what string, before string) {
	sw.t.Helper()
	if !errors.Is(err, target) {
		sw.t.Errorf("%s: got %v, want an error matching %v", name, err, target)
		return
	}
	if what != "" && !strings.Contains(err.Error(), what) {
		sw.t.Errorf("%s: error %q does not name %q", name, err, what)
	}
	if after := sw.counts(); after != before {
		sw.t.Errorf("%s: refused, but something was written: %s, then %s", name, before, after)
	}
}

type appendRow struct {
	name     string
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.NewEvent
	// field is the InvalidEventError.Field wanted; "" with target nil
	// means the append must succeed and read back byte for byte.
	field  string
	target error // a non-InvalidEventError refusal: ErrConflict, ErrDuplicateEvent
}

func (sw *sweep) append(s *eventstore.Store, r appendRow) {
	sw.t.Helper()
	before := sw.counts()
	res, err := s.Append(sw.ctx, r.stream, r.expected, r.events...)
	if r.field == "" && r.target == nil {
		if err != nil {
			sw.t.Errorf("%s: append: %v", r.name, err)
			return
		}
		sw.roundTrip(s, r, res)
		return
	}
	target := r.target
	if target == nil {
		target = eventstore.ErrInvalidEvent
		var ie *eventstore.InvalidEventError
		if errors.As(err, &ie) && ie.Field != r.field {
			sw.t.Errorf("%s: field %q, want %q (%v)", r.name, ie.Field, r.field, err)
		}
	}
	sw.refused(r.name, err, target, r.field, before)
}

// roundTrip reads the appended events back and compares them field by
// field, byte for byte.
func (sw *sweep) roundTrip(s *eventstore.Store, r appendRow, res eventstore.AppendResult) {
	sw.t.Helper()
	first := res.Version - int64(len(r.events)) + 1
	var got []eventstore.Event
	for e, err := range s.ReadStream(sw.ctx, r.stream, first) {
		if err != nil {
			sw.t.Errorf("%s: read back: %v", r.name, err)
			return
		}
		got = append(got, e)
	}
	if len(got) != len(r.events) {
		sw.t.Errorf("%s: read back %d events, appended %d", r.name, len(got), len(r.events))
		return
	}
	for i, want := range r.events {
		e := got[i]
		sv := want.SchemaVersion
		if sv == 0 {
			sv = 1
		}
		switch {
		case e.StreamID != r.stream:
			sw.t.Errorf("%s: stream %q read back as %q", r.name, r.stream, e.StreamID)
		case want.ID != uuid.Nil && e.ID != want.ID, e.ID == uuid.Nil:
			sw.t.Errorf("%s: id %s read back as %s", r.name, want.ID, e.ID)
		case e.Type != want.Type:
			sw.t.Errorf("%s: type %q read back as %q", r.name, want.Type, e.Type)
		case e.SchemaVersion != sv:
			sw.t.Errorf("%s: schema version %d read back as %d", r.name, want.SchemaVersion, e.SchemaVersion)
		case !bytes.Equal(e.Data, want.Data):
			sw.t.Errorf("%s: data %q read back as %q", r.name, want.Data, e.Data)
		case e.Metadata.CorrelationID != want.Metadata.CorrelationID || e.Metadata.CausationID != want.Metadata.CausationID:
			sw.t.Errorf("%s: metadata %+v read back as %+v", r.name, want.Metadata, e.Metadata)
		case len(want.Metadata.Values) > 0 && !maps.Equal(e.Metadata.Values, want.Metadata.Values), len(want.Metadata.Values) == 0 && len(e.Metadata.Values) > 0:
			sw.t.Errorf("%s: metadata values %q read back as %q", r.name, want.Metadata.Values, e.Metadata.Values)
		}
	}
}

func data(s string) eventstore.NewEvent { return eventstore.NewEvent{Type: "T", Data: []byte(s)} }

func nest(open, close string, depth int) string {
	return strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth)
}

// randomText is n bytes of base64 text that does not compress.
func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)[:n]
}

func TestSweepEventstore(t *testing.T) {
	t.Parallel()
	const maxSize, maxEvents = 8192, 40
	s, db := newStore(t, &eventstore.Config{MaxEventSize: maxSize, MaxAppendEvents: maxEvents})
	big := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema}) // default limits
	ctx := context.Background()
	sw := &sweep{t: t, db: db, ctx: ctx}
	ok := data(`{}`)

	t.Run("Append stream ID", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		for _, r := range runeWidths {
			for _, n := range lengths(eventstore.MaxStreamIDLength) {
				id := textOfLen(r, n)
				row := appendRow{name: fmt.Sprintf("stream of %d bytes of %q", n, r), stream: id, expected: eventstore.Any, events: []eventstore.NewEvent{ok}}
				if n == 0 || n > eventstore.MaxStreamIDLength || !validPGText(id) {
					row.field = "stream"
				}
				sw.append(s, row)
			}
		}
		for b, id := range everyByte() {
			row := appendRow{name: fmt.Sprintf("stream with byte %#x", b), stream: id, expected: eventstore.Any, events: []eventstore.NewEvent{ok}}
			if !validPGText(id) {
				row.field = "stream"
			}
			sw.append(s, row)
		}
	})

	t.Run("Append event type", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		for _, r := range runeWidths {
			for _, n := range lengths(eventstore.MaxTypeLength) {
				typ := textOfLen(r, n)
				row := appendRow{name: fmt.Sprintf("type of %d bytes of %q", n, r), stream: "type-1", expected: eventstore.Any,
					events: []eventstore.NewEvent{ok, {Type: typ, Data: []byte(`{}`)}}}
				if n == 0 || n > eventstore.MaxTypeLength || !validPGText(typ) {
					row.field = "type"
				}
				sw.append(s, row)
			}
		}
		for b, typ := range everyByte() {
			row := appendRow{name: fmt.Sprintf("type with byte %#x", b), stream: "type-2", expected: eventstore.Any, events: []eventstore.NewEvent{{Type: typ, Data: []byte(`{}`)}}}
			if !validPGText(typ) {
				row.field = "type"
			}
			sw.append(s, row)
		}
	})

	t.Run("Append expected version", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		versions := []int64{math.MinInt64, math.MinInt64 + 1, math.MinInt32 - 1, math.MinInt32, -1000, -3, -2, -1, 0, 1, 2, 3,
			math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32, math.MaxInt64 - 1, math.MaxInt64}
		for i, v := range versions {
			exp := eventstore.Exactly(v)
			for _, existing := range []int64{0, 1} {
				stream := fmt.Sprintf("exp-%d-%d", i, existing)
				if existing > 0 {
					if _, err := s.Append(ctx, stream, eventstore.NoStream, ok); err != nil {
						t.Fatal(err)
					}
				}
				row := appendRow{name: fmt.Sprintf("expected %d on a stream at %d", v, existing), stream: stream, expected: exp, events: []eventstore.NewEvent{ok, ok}}
				switch {
				case v < -2:
					row.field = "expected version"
				case v == -1, v == -2 && existing > 0, v == existing:
				default:
					row.target = eventstore.ErrConflict
				}
				sw.append(s, row)
			}
		}
	})

	t.Run("Append event ID", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		a, b := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
		maxID := uuid.UUID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		withID := func(id uuid.UUID) eventstore.NewEvent {
			return eventstore.NewEvent{ID: id, Type: "T", Data: []byte(`{}`)}
		}
		for _, r := range []appendRow{
			{name: "zero IDs are made", events: []eventstore.NewEvent{withID(uuid.Nil), withID(uuid.Nil)}},
			{name: "max UUID", events: []eventstore.NewEvent{withID(maxID)}},
			{name: "v4 UUID", events: []eventstore.NewEvent{withID(uuid.New())}},
			{name: "given IDs", events: []eventstore.NewEvent{withID(a), withID(b)}},
			{name: "stored ID again", events: []eventstore.NewEvent{withID(a)}, target: eventstore.ErrDuplicateEvent},
			{name: "stored ID last of two", events: []eventstore.NewEvent{withID(uuid.Nil), withID(b)}, target: eventstore.ErrDuplicateEvent},
			{name: "same ID twice in one append", events: []eventstore.NewEvent{withID(uuid.MustParse("0190b6a0-0000-7000-8000-000000000001")), withID(uuid.MustParse("0190b6a0-0000-7000-8000-000000000001"))}, target: eventstore.ErrDuplicateEvent},
			{name: "same ID first and last of three", events: []eventstore.NewEvent{withID(uuid.MustParse("0190b6a0-0000-7000-8000-000000000002")), ok, withID(uuid.MustParse("0190b6a0-0000-7000-8000-000000000002"))}, target: eventstore.ErrDuplicateEvent},
		} {
			r.stream, r.expected = "ids-1", eventstore.Any
			sw.append(s, r)
		}
	})

	t.Run("Append schema version", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		for _, v := range []int{math.MinInt, math.MinInt32 - 1, math.MinInt32, -1, 0, 1, 2, math.MaxInt32 - 1, math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt} {
			row := appendRow{name: fmt.Sprintf("schema version %d", v), stream: "sv-1", expected: eventstore.Any,
				events: []eventstore.NewEvent{{Type: "T", SchemaVersion: v, Data: []byte(`{}`)}}}
			if v < 0 || v > math.MaxInt32 {
				row.field = "schema version"
			}
			sw.append(s, row)
		}
	})

	t.Run("Append data", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		bad := []string{"", " ", "\t\n\r ", "{", "}", "[1,]", `{"a"}`, `{"a":1,}`, "nul", "tru", "01", "1.", ".1", "+1", "-", "1e", "NaN", "Infinity",
			"'a'", `"\x"`, `"\u12"`, `"\u12G4"`, "{}{}", "1 2", `"abc`, "\xef\xbb\xbf{}", "\x00", "{}\x00", `{"a":1}x`, "[", "]"}
		good := []string{`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1E+2`, `-1.5e-7`, `""`, ` {"a" : 1 } ` + "\n", "\t[\r\n1]",
			// What Postgres' json type keeps as text: escapes it does not
			// decode, numbers out of any float's range.
			`"\u0000"`, `{"k\u0000":"\u0000"}`, `"\ud800"`, `"\udc00"`, `"\ud800\ud800"`, `"\udbff\udfff"`, `"\uFFFF"`, `"\uFEFF"`,
			`1e999`, `-1e-999`, `[1e99999999]`, `123456789012345678901234567890`, `{"a":1,"a":2}`, `"\/\b\f\n\r\t\"\\"`,
			"\"\x7f\"", `"é€😀"`, `"` + strings.Repeat(`\\`, 100) + `"`}
		for b := range 0x20 {
			bad = append(bad, `"a`+string([]byte{byte(b)})+`b"`)          // raw control bytes are not JSON
			good = append(good, fmt.Sprintf(`"a\u%04xb"`, b))             // escaped they are
			good = append(good, fmt.Sprintf(`{"\u%04x":"\u%04X"}`, b, b)) // in keys too
		}
		for b := 0x80; b < 0x100; b++ {
			bad = append(bad, `"a`+string([]byte{byte(b)})+`b"`) // not UTF-8 on its own
		}
		for _, d := range bad {
			sw.append(s, appendRow{name: fmt.Sprintf("data %q", d), stream: "data-1", expected: eventstore.Any, events: []eventstore.NewEvent{ok, data(d)}, field: "data"})
		}
		for _, d := range good {
			sw.append(s, appendRow{name: fmt.Sprintf("data %q", d), stream: "data-2", expected: eventstore.Any, events: []eventstore.NewEvent{data(d)}})
		}
		// Nesting up to the limit encoding/json and Strata share, and one
		// more, in arrays and objects.
		for _, depth := range []int{1, 2, 100, 1000, 9999, 10000, 10001, 20000} {
			for _, br := range [][2]string{{"[", "]"}, {`{"a":`, "}"}, {`[{"a":`, "}]"}} {
				d, levels := nest(br[0], br[1], depth), depth
				if br[0] == `[{"a":` {
					d, levels = nest(br[0], br[1], depth/2), depth/2*2
				}
				row := appendRow{name: fmt.Sprintf("nesting %d of %s", levels, br[0]), stream: "data-3", expected: eventstore.Any, events: []eventstore.NewEvent{data(d)}}
				if levels > 10000 {
					row.field = "data"
				}
				sw.append(big, row)
			}
		}
		// Sizes around the limit, counted with the metadata.
		str := func(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }
		for _, n := range []int{maxSize - 1, maxSize, maxSize + 1, 4 * maxSize} {
			row := appendRow{name: fmt.Sprintf("data of %d bytes", n), stream: "size-1", expected: eventstore.Any, events: []eventstore.NewEvent{data(str(n))}}
			if n > maxSize {
				row.field = "size"
			}
			sw.append(s, row)
			withMeta := eventstore.NewEvent{Type: "T", Data: []byte(str(n - 100)), Metadata: eventstore.Metadata{CorrelationID: strings.Repeat("c", 40), CausationID: strings.Repeat("d", 40), Values: map[string]string{"k": strings.Repeat("v", 20-8)}}}
			row = appendRow{name: fmt.Sprintf("data and metadata of %d bytes", n), stream: "size-1", expected: eventstore.Any, events: []eventstore.NewEvent{withMeta}}
			if n > maxSize {
				row.field = "size"
			}
			sw.append(s, row)
		}
		for _, n := range []int{1 << 20, 1<<20 + 1} {
			row := appendRow{name: fmt.Sprintf("data of %d bytes under the default limit", n), stream: "size-2", expected: eventstore.Any, events: []eventstore.NewEvent{data(str(n))}}
			if n > 1<<20 {
				row.field = "size"
			}
			sw.append(big, row)
		}
	})

	t.Run("Append metadata", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		meta := func(m eventstore.Metadata) []eventstore.NewEvent {
			return []eventstore.NewEvent{ok, {Type: "T", Data: []byte(`{}`), Metadata: m}}
		}
		for _, r := range runeWidths {
			for _, n := range lengths(eventstore.MaxCorrelationIDLength) {
				v := textOfLen(r, n)
				field := ""
				if !validPGText(v) || n > eventstore.MaxCorrelationIDLength {
					field = "metadata"
				}
				sw.append(s, appendRow{name: fmt.Sprintf("correlation ID of %d bytes of %q", n, r), stream: "meta-1", expected: eventstore.Any, events: meta(eventstore.Metadata{CorrelationID: v}), field: field})
				sw.append(s, appendRow{name: fmt.Sprintf("causation ID of %d bytes of %q", n, r), stream: "meta-1", expected: eventstore.Any, events: meta(eventstore.Metadata{CausationID: v}), field: field})
				field = ""
				if n == 0 || !validPGText(v) {
					field = "metadata" // an empty key, or not text
				}
				sw.append(s, appendRow{name: fmt.Sprintf("metadata key of %d bytes of %q", n, r), stream: "meta-1", expected: eventstore.Any, events: meta(eventstore.Metadata{Values: map[string]string{v: "x"}}), field: field})
			}
		}
		// Correlation IDs Postgres' btree index cannot hold (about 2.7 kB,
		// uncompressible).
		for _, n := range []int{2000, 2700, 2800, 4000} {
			sw.append(s, appendRow{name: fmt.Sprintf("random correlation ID of %d bytes", n), stream: "meta-2", expected: eventstore.Any,
				events: meta(eventstore.Metadata{CorrelationID: randomText(n)}), field: "metadata"})
		}
		for b, v := range everyByte() {
			field := ""
			if !validPGText(v) {
				field = "metadata"
			}
			name := fmt.Sprintf("byte %#x in metadata", b)
			sw.append(s, appendRow{name: name + " key", stream: "meta-3", expected: eventstore.Any, events: meta(eventstore.Metadata{Values: map[string]string{v: v}}), field: field})
			sw.append(s, appendRow{name: name + " value", stream: "meta-3", expected: eventstore.Any, events: meta(eventstore.Metadata{Values: map[string]string{"k": v, "traceparent": "x"}}), field: field})
			sw.append(s, appendRow{name: name + " correlation", stream: "meta-3", expected: eventstore.Any, events: meta(eventstore.Metadata{CorrelationID: v, CausationID: v}), field: field})
		}
		many := map[string]string{}
		for i := range 100 {
			many[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("<&>\u2028%d", i)
		}
		sw.append(s, appendRow{name: "100 metadata pairs with escapes", stream: "meta-4", expected: eventstore.Any, events: meta(eventstore.Metadata{Values: many})})
		sw.append(s, appendRow{name: "huge metadata value", stream: "meta-4", expected: eventstore.Any, events: meta(eventstore.Metadata{Values: map[string]string{"k": strings.Repeat("v", maxSize)}}), field: "size"})
	})

	t.Run("Append event count", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		for _, n := range []int{0, 1, 2, maxEvents - 1, maxEvents, maxEvents + 1, 10 * maxEvents} {
			events := make([]eventstore.NewEvent, n)
			for i := range events {
				events[i] = data(fmt.Sprintf(`{"i":%d}`, i))
			}
			row := appendRow{name: fmt.Sprintf("%d events", n), stream: "count-1", expected: eventstore.Any, events: events}
			if n == 0 || n > maxEvents {
				row.field = "events"
			}
			sw.append(s, row)
		}
		sw.append(s, appendRow{name: "nil events", stream: "count-1", expected: eventstore.Any, field: "events"})
		// A bad event anywhere in a full append writes none of them.
		for i := range maxEvents {
			events := make([]eventstore.NewEvent, maxEvents)
			for k := range events {
				events[k] = ok
			}
			events[i] = data(`{"a":`)
			sw.append(s, appendRow{name: fmt.Sprintf("bad event at %d of %d", i, maxEvents), stream: "count-2", expected: eventstore.Any, events: events, field: "data"})
		}
	})

	t.Run("AppendTx leaves the transaction usable after a refusal", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		for _, r := range []appendRow{
			{name: "schema version", events: []eventstore.NewEvent{{Type: "T", SchemaVersion: math.MaxInt32 + 1, Data: []byte(`{}`)}}, field: "schema version"},
			{name: "correlation ID", events: []eventstore.NewEvent{{Type: "T", Data: []byte(`{}`), Metadata: eventstore.Metadata{CorrelationID: randomText(3000)}}}, field: "metadata"},
			{name: "stream", stream: "tx-\x00", events: []eventstore.NewEvent{ok}, field: "stream"},
			{name: "data", events: []eventstore.NewEvent{data(`"\x01"`)}, field: "data"},
		} {
			if r.stream == "" {
				r.stream = "tx-1"
			}
			before := sw.counts()
			err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				_, err := s.AppendTx(ctx, tx, r.stream, eventstore.Any, r.events...)
				var ie *eventstore.InvalidEventError
				if !errors.As(err, &ie) || ie.Field != r.field {
					t.Errorf("AppendTx %s: got %v, want an InvalidEventError of field %q", r.name, err, r.field)
				}
				var one int
				if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
					t.Errorf("AppendTx %s: transaction not usable after the refusal: %v", r.name, err)
				}
				return errors.New("roll back")
			})
			if err == nil {
				t.Fatal("rolled back")
			}
			if after := sw.counts(); after != before {
				t.Errorf("AppendTx %s: wrote %s, then %s", r.name, before, after)
			}
		}
	})

	t.Run("ReadStream", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		for range 3 {
			if _, err := s.Append(ctx, "rs-1", eventstore.Any, ok); err != nil {
				t.Fatal(err)
			}
		}
		for _, from := range []int64{math.MinInt64, math.MinInt32, -1, 0, 1, 2, 3, 4, math.MaxInt32, math.MaxInt64} {
			var n int
			for _, err := range s.ReadStream(ctx, "rs-1", from) {
				if err != nil {
					t.Errorf("ReadStream from %d: %v", from, err)
				}
				n++
			}
			want := 3
			switch {
			case from > 3:
				want = 0
			case from > 1:
				want = int(3 - from + 1)
			}
			if n != want {
				t.Errorf("ReadStream from %d: %d events, want %d", from, n, want)
			}
		}
		for b, id := range everyByte() {
			id += "-none"
			for _, err := range s.ReadStream(ctx, id, 0) {
				target := eventstore.ErrStreamNotFound
				if !validPGText(id) {
					target = eventstore.ErrInvalidArgument
				}
				if !errors.Is(err, target) {
					t.Errorf("ReadStream of a stream with byte %#x: got %v, want %v", b, err, target)
				}
			}
			_, err := s.StreamVersion(ctx, id)
			if validPGText(id) && !errors.Is(err, eventstore.ErrStreamNotFound) || !validPGText(id) && !errors.Is(err, eventstore.ErrInvalidArgument) {
				t.Errorf("StreamVersion of a stream with byte %#x: %v", b, err)
			}
		}
		for _, err := range s.ReadStream(ctx, "", 0) {
			if !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Errorf("ReadStream of the empty stream ID: %v", err)
			}
		}
		_ = sw
	})

	t.Run("ReadAll", func(t *testing.T) {
		for _, limit := range []int{math.MinInt, math.MinInt32, -1, 0, 1, 2, 1000, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt / 8, math.MaxInt/8 + 1, math.MaxInt} {
			for _, f := range []eventstore.Filter{{}, {Categories: []string{"rs"}}, {Types: []string{"T"}}, {Partitions: 2, Partition: 1}} {
				page, err := s.ReadAllFiltered(ctx, eventstore.Position{}, limit, f)
				if limit <= 0 {
					if !errors.Is(err, eventstore.ErrInvalidArgument) || !strings.Contains(err.Error(), "limit") {
						t.Errorf("ReadAllFiltered limit %d %+v: got %v, want ErrInvalidArgument naming the limit", limit, f, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("ReadAllFiltered limit %d %+v: %v", limit, f, err)
				} else if len(page.Events) > limit {
					t.Errorf("ReadAllFiltered limit %d: %d events", limit, len(page.Events))
				}
			}
			_, err := s.ReadLast(ctx, limit, eventstore.Filter{Types: []string{"T"}})
			if limit <= 0 != errors.Is(err, eventstore.ErrInvalidArgument) || limit > 0 && err != nil {
				t.Errorf("ReadLast limit %d: %v", limit, err)
			}
			_, err = s.ReadCorrelated(ctx, "c", limit)
			if limit <= 0 != errors.Is(err, eventstore.ErrInvalidArgument) || limit > 0 && err != nil {
				t.Errorf("ReadCorrelated limit %d: %v", limit, err)
			}
		}
		// Positions: the transaction ID is an unsigned number that Postgres
		// stores as bigint; past that range it is no position of the log.
		for _, tx := range []uint64{0, 1, math.MaxInt32, math.MaxInt64 - 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
			for _, seq := range []int64{math.MinInt64, -1, 0, 1, math.MaxInt64} {
				after := eventstore.Position{TxID: tx, Seq: seq}
				for _, f := range []eventstore.Filter{{}, {Types: []string{"T"}}} {
					page, err := s.ReadAllFiltered(ctx, after, 10, f)
					if tx > math.MaxInt64 {
						if !errors.Is(err, eventstore.ErrInvalidArgument) || !strings.Contains(err.Error(), "position") {
							t.Errorf("ReadAllFiltered after %s: got %d events, %v; want ErrInvalidArgument naming the position", after, len(page.Events), err)
						}
						continue
					}
					if err != nil {
						t.Errorf("ReadAllFiltered after %s: %v", after, err)
					}
					for _, e := range page.Events {
						if !after.Less(e.Position) {
							t.Errorf("ReadAllFiltered after %s returned %s", after, e.Position)
						}
					}
				}
			}
		}
		// Filters.
		type frow struct {
			f  eventstore.Filter
			ok bool
		}
		var rows []frow
		for _, parts := range []int{math.MinInt, -1, 0, 1, 2, 3, 1024, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt} {
			for _, p := range []int{math.MinInt, -1, 0, 1, parts - 1, parts, math.MaxInt} {
				rows = append(rows, frow{eventstore.Filter{Partitions: parts, Partition: p}, parts <= 1 || p >= 0 && p < parts})
			}
		}
		for _, v := range everyByte() {
			rows = append(rows, frow{eventstore.Filter{Categories: []string{"rs", v}}, validPGText(v)}, frow{eventstore.Filter{Types: []string{v}}, validPGText(v)})
		}
		rows = append(rows, frow{eventstore.Filter{Categories: []string{""}, Types: []string{""}}, true}, frow{eventstore.Filter{Categories: []string{}, Types: []string{}}, true})
		for _, r := range rows {
			for name, read := range map[string]func() error{
				"ReadAllFiltered": func() error { _, err := s.ReadAllFiltered(ctx, eventstore.Position{}, 10, r.f); return err },
				"ReadLast":        func() error { _, err := s.ReadLast(ctx, 10, r.f); return err },
			} {
				err := read()
				if r.ok && err != nil || !r.ok && (!errors.Is(err, eventstore.ErrInvalidArgument) || !strings.Contains(err.Error(), "filter")) {
					t.Errorf("%s with filter %#v: %v", name, r.f, err)
				}
			}
		}
		for b, v := range everyByte() {
			_, err := s.ReadCorrelated(ctx, v, 10)
			if validPGText(v) != (err == nil) || err != nil && !errors.Is(err, eventstore.ErrInvalidArgument) {
				t.Errorf("ReadCorrelated of a correlation ID with byte %#x: %v", b, err)
			}
		}
	})

	t.Run("Snapshots", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		allBytes := make([]byte, 256)
		for i := range allBytes {
			allBytes[i] = byte(i)
		}
		type srow struct {
			name string
			snap eventstore.Snapshot
			ok   bool
		}
		var rows []srow
		for _, r := range runeWidths {
			for _, n := range lengths(eventstore.MaxStreamIDLength) {
				id := textOfLen(r, n)
				rows = append(rows, srow{fmt.Sprintf("stream of %d bytes of %q", n, r), eventstore.Snapshot{StreamID: id, Version: 1, Data: []byte("x")}, n > 0 && n <= eventstore.MaxStreamIDLength && validPGText(id)})
			}
		}
		rows = append(rows, srow{"random stream ID of 3000 bytes", eventstore.Snapshot{StreamID: randomText(3000), Version: 1, Data: []byte("x")}, false})
		for b, id := range everyByte() {
			rows = append(rows, srow{fmt.Sprintf("stream with byte %#x", b), eventstore.Snapshot{StreamID: id, Version: 1, Data: []byte("x")}, validPGText(id)})
		}
		for _, v := range []int64{math.MinInt64, -1, 0, 1, math.MaxInt32 + 1, math.MaxInt64} {
			rows = append(rows, srow{fmt.Sprintf("version %d", v), eventstore.Snapshot{StreamID: fmt.Sprintf("snap-v%d", v), Version: v, Data: []byte("x")}, v > 0})
		}
		for _, v := range []int{math.MinInt, math.MinInt32, -1, 0, 1, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt} {
			rows = append(rows, srow{fmt.Sprintf("schema version %d", v), eventstore.Snapshot{StreamID: fmt.Sprintf("snap-sv%d", v), Version: 1, SchemaVersion: v, Data: []byte("x")}, v >= 0 && v <= math.MaxInt32})
		}
		rows = append(rows,
			srow{"nil data", eventstore.Snapshot{StreamID: "snap-d1", Version: 1}, false},
			srow{"empty data", eventstore.Snapshot{StreamID: "snap-d2", Version: 1, Data: []byte{}}, true},
			srow{"every byte", eventstore.Snapshot{StreamID: "snap-d3", Version: 1, Data: allBytes}, true},
			srow{"1 MiB", eventstore.Snapshot{StreamID: "snap-d4", Version: 1, Data: bytes.Repeat(allBytes, 4096)}, true},
		)
		for _, r := range rows {
			if r.ok && r.snap.Version == 1 {
				// A snapshot is of a version the stream has (migration 0009).
				if _, err := s.Append(ctx, r.snap.StreamID, eventstore.Any, ev("Snapped", `{}`)); err != nil {
					t.Fatalf("SaveSnapshot %s: append its stream's first event: %v", r.name, err)
				}
			}
			if r.snap.Version > 1 {
				r.ok = false // versions the stream does not have
			}
			before := sw.counts()
			err := s.SaveSnapshot(ctx, r.snap)
			if !r.ok {
				sw.refused("SaveSnapshot "+r.name, err, eventstore.ErrInvalidEvent, "snapshot", before)
				continue
			}
			if err != nil {
				t.Errorf("SaveSnapshot %s: %v", r.name, err)
				continue
			}
			got, err := s.LoadSnapshot(ctx, r.snap.StreamID)
			if err != nil || got.Version != r.snap.Version || got.SchemaVersion != r.snap.SchemaVersion || !bytes.Equal(got.Data, r.snap.Data) || got.Data == nil {
				t.Errorf("LoadSnapshot %s: %v, %v", r.name, got, err)
			}
		}
		for b, id := range everyByte() {
			_, err := s.LoadSnapshot(ctx, id+"-none")
			if validPGText(id) && !errors.Is(err, eventstore.ErrSnapshotNotFound) || !validPGText(id) && !errors.Is(err, eventstore.ErrInvalidArgument) {
				t.Errorf("LoadSnapshot of a stream with byte %#x: %v", b, err)
			}
		}
	})

	t.Run("Subscription config", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		type crow struct {
			name string
			cfg  eventstore.SubscriptionConfig
			bad  string // what the error must name; "" when accepted
		}
		var rows []crow
		for _, r := range runeWidths {
			for _, n := range lengths(eventstore.MaxStreamIDLength) {
				name := textOfLen(r, n)
				bad := ""
				if n == 0 || n > eventstore.MaxStreamIDLength || !validPGText(name) {
					bad = "name"
				}
				rows = append(rows, crow{fmt.Sprintf("name of %d bytes of %q", n, r), eventstore.SubscriptionConfig{Name: name}, bad})
			}
		}
		for b, v := range everyByte() {
			bad := ""
			if !validPGText(v) {
				bad = "name"
			}
			rows = append(rows, crow{fmt.Sprintf("name with byte %#x", b), eventstore.SubscriptionConfig{Name: v}, bad})
			if !validPGText(v) {
				bad = "categor"
			}
			rows = append(rows, crow{fmt.Sprintf("category with byte %#x", b), eventstore.SubscriptionConfig{Name: fmt.Sprintf("cat-%d", b), Categories: []string{v}}, bad})
			if !validPGText(v) {
				bad = "type"
			}
			rows = append(rows, crow{fmt.Sprintf("type with byte %#x", b), eventstore.SubscriptionConfig{Name: fmt.Sprintf("typ-%d", b), Types: []string{v}}, bad})
			if !validPGText(v) {
				bad = "owner"
			}
			rows = append(rows, crow{fmt.Sprintf("owner with byte %#x", b), eventstore.SubscriptionConfig{Name: fmt.Sprintf("own-%d", b), Owner: v}, bad})
		}
		for _, n := range []int{math.MinInt, -1, 0, 1, 2, eventstore.MaxPartitions, eventstore.MaxPartitions + 1, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt} {
			bad := ""
			if n > eventstore.MaxPartitions {
				bad = "partitions"
			}
			rows = append(rows, crow{fmt.Sprintf("%d partitions", n), eventstore.SubscriptionConfig{Name: fmt.Sprintf("parts-%d", n), Partitions: n}, bad})
		}
		for _, d := range []time.Duration{math.MinInt64, -1, 0, 1, 2, 3, time.Millisecond - 1, time.Millisecond, time.Hour, math.MaxInt64} {
			bad := ""
			if d > 0 && d < time.Millisecond {
				bad = "lease"
			}
			rows = append(rows, crow{fmt.Sprintf("lease TTL %d", d), eventstore.SubscriptionConfig{Name: fmt.Sprintf("lease-%d", d), LeaseTTL: d}, bad})
			rows = append(rows, crow{fmt.Sprintf("durations %d", d), eventstore.SubscriptionConfig{Name: fmt.Sprintf("dur-%d", d), PollInterval: d, RetryBackoff: d, MaxRetryBackoff: d}, ""})
		}
		for _, n := range []int{math.MinInt, -1, 0, 1, math.MaxInt32 + 1, math.MaxInt} {
			rows = append(rows, crow{fmt.Sprintf("batch size and attempts %d", n), eventstore.SubscriptionConfig{Name: fmt.Sprintf("batch-%d", n), BatchSize: n, MaxAttempts: n}, ""})
		}
		registered := map[string]string{}
		for _, r := range rows {
			before := ""
			if r.bad != "" {
				before = sw.counts()
			}
			sub, err := s.Subscription(r.cfg)
			if r.bad != "" {
				if sub != nil {
					t.Errorf("Subscription %s: returned a subscription with the error %v", r.name, err)
				}
				sw.refused("Subscription "+r.name, err, eventstore.ErrInvalidArgument, r.bad, before)
				continue
			}
			if err != nil {
				t.Errorf("Subscription %s: %v", r.name, err)
				continue
			}
			if err := sub.Register(ctx); err != nil {
				t.Errorf("Register %s: %v", r.name, err)
				continue
			}
			registered[r.cfg.Name] = r.name
		}
		// Every accepted name is stored as given.
		nameRows, err := db.Pool.Query(ctx, `SELECT DISTINCT name FROM `+pgx.Identifier{db.Schema, "subscriptions"}.Sanitize())
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(nameRows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			delete(registered, n)
		}
		for _, row := range registered {
			t.Errorf("Register %s: not stored under its name", row)
		}
		// Run with the edge values that are accepted: it starts, handles
		// what is there and stops.
		for _, cfg := range []eventstore.SubscriptionConfig{
			{Name: "run-lease", LeaseTTL: time.Millisecond},
			{Name: "run-batch", BatchSize: math.MaxInt, Types: []string{"T"}, PollInterval: 1, RetryBackoff: 1},
			{Name: "run-parts", Partitions: 7, BatchSize: 1},
		} {
			cfg.StopWhenCaughtUp = true
			sub, err := s.Subscription(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// It reads to the end of the readable log (which any open
			// transaction on the server may hold back) and returns.
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = sub.Run(rctx, func(_ context.Context, _ pgx.Tx, events []eventstore.Event) error { return nil })
			cancel()
			if err != nil {
				t.Errorf("Run %s: %v", cfg.Name, err)
			}
		}
	})

	t.Run("Admin", func(t *testing.T) {
		sw := &sweep{t: t, db: db, ctx: ctx}
		sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "admin-1", Partitions: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.Register(ctx); err != nil {
			t.Fatal(err)
		}
		for _, tx := range []uint64{0, 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
			for _, seq := range []int64{math.MinInt64, -1, 0, math.MaxInt64} {
				to := eventstore.Position{TxID: tx, Seq: seq}
				before := sw.counts()
				err := s.ResetSubscription(ctx, "admin-1", to, nil)
				if tx > math.MaxInt64 {
					sw.refused(fmt.Sprintf("ResetSubscription to %s", to), err, eventstore.ErrInvalidArgument, "position", before)
					continue
				}
				if tx == math.MaxInt64 {
					sw.refused(fmt.Sprintf("ResetSubscription to %s", to), err, eventstore.ErrPastHead, "past the head", before)
					continue
				}
				st, serr := s.SubscriptionStatuses(ctx, "admin-1")
				if err != nil || serr != nil || len(st) != 2 || st[0].Checkpoint != to || st[1].Checkpoint != to {
					t.Errorf("ResetSubscription to %s: %v; status %+v, %v", to, err, st, serr)
				}
			}
		}
		for b, v := range everyByte() {
			v += "-none"
			name := fmt.Sprintf("admin name with byte %#x", b)
			before := sw.counts()
			errs := map[string]error{"ResetSubscription": s.ResetSubscription(ctx, v, eventstore.Position{}, nil), "DeleteSubscription": s.DeleteSubscription(ctx, v)}
			_, errs["RetryDeadLetters"] = s.RetryDeadLetters(ctx, v, v)
			_, errs["SubscriptionStatuses"] = s.SubscriptionStatuses(ctx, v)
			_, errs["DeadLetters"] = s.DeadLetters(ctx, v)
			for fn, err := range errs {
				switch {
				case !validPGText(v):
					sw.refused(fn+" "+name, err, eventstore.ErrInvalidArgument, "", before)
				case fn == "ResetSubscription":
					if err == nil || errors.Is(err, eventstore.ErrInvalidArgument) {
						t.Errorf("%s %s: %v, want an error for no such subscription", fn, name, err)
					}
				case err != nil:
					t.Errorf("%s %s: %v", fn, name, err)
				}
			}
		}
	})
	_ = sw
}

// TestSweepSchemaNameLengths runs the store in schemas of every length
// Postgres allows for an identifier (63 bytes), so that every name the
// store derives from it (the LISTEN/NOTIFY channel) still fits.
func TestSweepSchemaNameLengths(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := pgtest.NewEmpty(t)
	for _, n := range []int{len(base.Schema), 40, 48, 49, 50, 51, 62, 63} {
		name := base.Schema + strings.Repeat("x", n-len(base.Schema))
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if _, err := base.Pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = base.Pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
			})
			if err := migrations.Apply(ctx, base.Pool, name); err != nil {
				t.Fatal(err)
			}
			s := eventstore.New(base.Pool, &eventstore.Config{Schema: name, NotifyInterval: time.Nanosecond})
			if len(storeview.Of(s).Channel) > 63 {
				t.Errorf("schema of %d bytes: channel %q is %d bytes, longer than Postgres' 63", n, storeview.Of(s).Channel, len(storeview.Of(s).Channel))
			}
			for i := range 3 {
				if _, err := s.Append(ctx, "s-1", eventstore.Any, data(`{}`)); err != nil {
					t.Fatalf("schema of %d bytes: append %d: %v", n, i, err)
				}
			}
			sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "sub", StopWhenCaughtUp: true})
			if err != nil {
				t.Fatal(err)
			}
			// It listens on the store's channel and reads to the end of the
			// readable log (which any open transaction on the server may
			// hold back).
			if err := sub.Run(ctx, func(context.Context, pgx.Tx, []eventstore.Event) error { return nil }); err != nil {
				t.Fatalf("schema of %d bytes: subscription: %v", n, err)
			}
			if err := s.ResetSubscription(ctx, "sub", eventstore.Position{}, nil); err != nil {
				t.Fatalf("schema of %d bytes: reset: %v", n, err)
			}
		})
	}
}

package eventstore

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/rawjson"
)

// metadataCases are metadata pairs that exercise every escape.
var metadataCases = []map[string]string{
	{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	{"b": "2", "a": "1", "c": ""},
	{`quote"`: `back\slash`, "ctl": "\x02\x01\x1f\b\f\n\r\t\x7f", "html": "<a href='x'>&</a>"},
	{"line": "a\u2028b\u2029c", "uni": "é中🙂", "e2": "\xe2\x80\xa7\xe2\x80\xaa"},
	{"k": `":"`, `{"x":1}`: "[]"},
}

// The hand-written encoder writes exactly what encoding/json writes, and
// the decoder reads it back, through the fast path or the fallback.
func TestMetadataCodecMatchesEncodingJSON(t *testing.T) {
	for _, values := range metadataCases {
		checkMetadataCodec(t, values)
	}
}

func checkMetadataCodec(t *testing.T, values map[string]string) {
	t.Helper()
	got, err := encodeMetadata(Metadata{Values: values})
	if err != nil {
		t.Fatalf("encode %q: %v", values, err)
	}
	want, _ := json.Marshal(values)
	if string(got) != string(want) {
		t.Fatalf("encode %q:\n got %s\nwant %s", values, got, want)
	}
	var sc eventScanner
	back, err := sc.decodeMetadata(string(got), got)
	if err != nil || !maps.Equal(back, values) {
		t.Fatalf("decode %s: %q, %v; want %q", got, back, err, values)
	}
}

// The decoder agrees with encoding/json on any document.
func TestDecodeMetadataMatchesEncodingJSON(t *testing.T) {
	for _, doc := range []string{
		`{}`, `{"a":"1"}`, `{"a":"1","a":"2"}`, `{ "a" : "1" }`, `{"a":"\u00e9"}`, `{"a":null}`,
		`{"a":1}`, `{"a":"1",}`, `{"a":"1"`, `{"a"}`, `{"a":"1"}x`, `null`, `[]`, `{"a":"1""b":"2"}`,
	} {
		checkDecodeMetadata(t, doc)
	}
}

func checkDecodeMetadata(t *testing.T, doc string) {
	t.Helper()
	var want map[string]string
	wantErr := json.Unmarshal([]byte(doc), &want)
	var sc eventScanner
	got, err := sc.decodeMetadata(doc, []byte(doc))
	if (err != nil) != (wantErr != nil) || (err == nil && !maps.Equal(got, want)) {
		t.Fatalf("decode %s: %q, %v; encoding/json: %q, %v", doc, got, err, want, wantErr)
	}
}

func FuzzMetadataCodec(f *testing.F) {
	f.Add("traceparent", "00-abc-01", `{"a":"b"}`)
	f.Add(`k"\`, "<\u2028>", `{"a":"b\n"}`)
	f.Fuzz(func(t *testing.T, k, v, doc string) {
		if k != "" && validText(k) && validText(v) {
			checkMetadataCodec(t, map[string]string{k: v, "x" + k: v + "y"})
		}
		if utf8.ValidString(doc) {
			checkDecodeMetadata(t, doc)
		}
	})
}

// jsonCases are documents near the edges of the JSON grammar.
var jsonCases = []string{
	``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `1e`, `1e+`, `1E-7`, `-12.5e10`, `.5`, `+1`,
	`""`, `"`, `"\"`, `"\\"`, `"\u00e9"`, `"\u00g9"`, `"\u12"`, `"\x"`, `"a\/b"`, "\"\t\"", "\"\x7f\"",
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `[]`, `[`, `]`, `[1,]`, `[,1]`, `[1 2]`, ` [ 1 , [ ] , { } ] `,
	`{}`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{"a":1,"b":[{"c":null}]}`, `{1:2}`, `{"a":1}}`,
	`[]]`, `{"a":[}`, "{\"a\":\"\xff\"}", "\xef\xbb\xbf{}", `[1]x`, "\r\n\t{}\n",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 300) + "1" + strings.Repeat("}", 300),
}

// validJSON agrees with json.Valid.
func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, doc := range jsonCases {
		if got, want := rawjson.Valid([]byte(doc)), json.Valid([]byte(doc)); got != want {
			t.Errorf("rawjson.Valid(%.40q) = %v, json.Valid says %v", doc, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, doc := range jsonCases {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if got, want := rawjson.Valid(doc), json.Valid(doc); got != want {
			t.Fatalf("rawjson.Valid(%q) = %v, json.Valid says %v", doc, got, want)
		}
	})
}

// Rows decoded from their binary form are the events rows.Scan makes: the
// fast path is checked against the fallback, which a pool on the simple
// protocol (text results) takes, with the default timestamptz codec and
// with one whose ScanLocation is set.
func TestScanFastPathMatchesScan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	evs := []NewEvent{{Type: "Bare", Data: []byte(`"x"`)}}
	for i, values := range metadataCases {
		caus := "caus"
		if i%2 == 0 {
			caus = ""
		}
		evs = append(evs, NewEvent{
			Type: []string{"Ta", "Tb"}[i%2], SchemaVersion: i + 1,
			Data:     []byte(`{"i": ` + strconv.Itoa(i) + ` , "s":"\u00e9"}`),
			Metadata: Metadata{CorrelationID: "corr", CausationID: caus, Values: values},
		})
	}
	seed := New(db.Pool, &Config{Schema: db.Schema})
	if _, err := seed.Append(ctx, "s-1", NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Append(ctx, "s-2", NoStream, NewEvent{Type: "Other", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	newPool := func(simple bool, loc *time.Location) *pgxpool.Pool {
		cfg := pgtest.Config(t)
		if simple {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		}
		if loc != nil {
			cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
				c.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &pgtype.TimestamptzCodec{ScanLocation: loc}})
				return nil
			}
		}
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	read := func(s *Store, stream string) []Event {
		var out []Event
		for e, err := range s.ReadStream(ctx, stream, 0) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
		return out
	}
	for _, loc := range []*time.Location{nil, time.FixedZone("X", 3600)} {
		fast := New(newPool(false, loc), &Config{Schema: db.Schema})
		slow := New(newPool(true, loc), &Config{Schema: db.Schema})
		for _, stream := range []string{"s-1", "s-2"} {
			got, want := read(fast, stream), read(slow, stream)
			if len(got) == 0 || !reflect.DeepEqual(got, want) {
				t.Fatalf("stream %s, location %v: fast path\n%+v\nrows.Scan\n%+v", stream, loc, got, want)
			}
		}
		if loc != nil && read(fast, "s-2")[0].RecordedAt.Location() != loc {
			t.Fatal("ScanLocation ignored")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err1 := fast.ReadAll(ctx, Position{}, 100)
			want, err2 := slow.ReadAll(ctx, Position{}, 100)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if len(got.Events) == len(evs)+1 && reflect.DeepEqual(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("log, location %v: fast path\n%+v\nrows.Scan\n%+v", loc, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

package schema

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

// docSeeds cover the grammar's corners: escapes, surrogates, invalid
// UTF-8, HTML characters, numbers, nesting, trailing data.
var docSeeds = []string{
	`{"order_id":"o-1","customer":"Ada","amount":12.5,"items":[{"sku":"a","qty":1}]}`,
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e-7`, `-12E+3`, `"x"`, ` {"a" : [ 1 , 2 ] } `,
	`{"a":1,"a":2}`, `{"":""}`, `{"a":{"b":{"c":[[],{}]}}}`,
	`"\u00e9\ud83d\ude00\ud800\udc00\ud800x\udc00\u0000\"\\\/\b\f\n\r\t"`,
	`"\ud800\u0041"`, `"\ud800\uzzzz"`, "\"\xff\xfe\xed\xa0\x80\xef\xbf\xbd\"", `"<&>` + "\u2028\u2029" + `"`,
	"\"\x01\"", `{"a":1}{}`, `{"a":1} x`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `+1`, `NaN`,
	`tru`, `nul`, `{"a"}`, `{"a":}`, `{,}`, `[`, `"abc`, `"\x"`, `"\u12"`, ``, ` `,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

// FuzzDocCodec holds parseDoc to what a json.Decoder with UseNumber gives
// for the same bytes, and appendDoc to what json.Marshal prints.
func FuzzDocCodec(f *testing.F) {
	for _, s := range docSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDocCodec(t, data)
	})
}

// TestDocCodecSeeds runs the seeds and the stored corpus in every test
// run (the fuzzer does too, but only under -run covering it).
func TestDocCodecSeeds(t *testing.T) {
	for _, s := range docSeeds {
		checkDocCodec(t, []byte(s))
	}
}

func checkDocCodec(t *testing.T, data []byte) {
	t.Helper()
	var want any
	wantErr := decodeJSON(data, &want)
	got, err := parseDoc(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: parseDoc error %v, encoding/json error %v", data, err, wantErr)
	}
	if err != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: parseDoc gives %#v, encoding/json %#v", data, got, want)
	}
	wantOut, wantErr := json.Marshal(want)
	out, err := appendDoc(nil, got)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(out, wantOut) {
		t.Fatalf("%q: appendDoc gives %q (%v), json.Marshal %q (%v)", data, out, err, wantOut, wantErr)
	}
}

// Upcasters add Go values to documents: appendDoc prints them as
// json.Marshal does, including values it hands to json.Marshal.
func TestAppendDocGoValues(t *testing.T) {
	type point struct{ X, Y int }
	for _, v := range []any{
		int(-7), int64(math.MinInt64), int32(5), uint64(math.MaxUint64), uint8(3), float32(1.5),
		0.0, -0.0, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, math.SmallestNonzeroFloat64, math.MaxFloat64,
		json.Number(""), "<tag> & \u2028", []any(nil), map[string]any(nil), []string{"a"},
		map[string]any{"b": 1, "a": []any{point{1, 2}, nil, true}, "c": map[string]string{"z": "y"}},
		strings.Repeat("k", 3),
		map[string]any{"k01": 1, "k02": 2, "k03": 3, "k04": 4, "k05": 5, "k06": 6, "k07": 7, "k08": 8, "k09": 9,
			"k10": 10, "k11": 11, "k12": 12, "k13": 13, "k14": 14, "k15": 15, "k16": 16, "k17": 17, "k18": 18},
	} {
		want, wantErr := json.Marshal(v)
		got, err := appendDoc(nil, v)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Errorf("%#v: appendDoc gives %s (%v), json.Marshal %s (%v)", v, got, err, want, wantErr)
		}
	}
	for _, v := range []any{math.NaN(), math.Inf(1), json.Number("1x"), map[string]any{"a": math.Inf(-1)}} {
		if _, err := appendDoc(nil, v); err == nil {
			t.Errorf("%#v: appendDoc accepts what json.Marshal refuses", v)
		}
	}
}

// The parts of a decode through upcasters, one by one, on a typical
// 300-byte payload: go test -run '^$' -bench Doc ./schema/
const benchDoc = `{"order_id":"order-7f3c2a91-4b6e-4d8a-9c1f-2e5b7a9d0c11","customer":"Ada Lovelace",` +
	`"amount":1249.95,"items":[{"sku":"BOOK-ANALYTICAL-ENGINE","qty":1},{"sku":"PEN-FOUNTAIN-BLACK","qty":2},` +
	`{"sku":"PAPER-A4-500","qty":4},{"sku":"INK-BOTTLE-BLUE","qty":3},{"sku":"NOTEBOOK-GRID","qty":5},{"sku":"STAMP-SET","qty":1}]}`

func BenchmarkDocParse(b *testing.B) {
	data := []byte(benchDoc)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseDoc(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDocParseBaselineDecoder(b *testing.B) {
	data := []byte(benchDoc)
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := decodeJSON(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDocAppend(b *testing.B) {
	v, _ := parseDoc([]byte(benchDoc))
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = appendDoc(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDocAppendBaselineMarshal(b *testing.B) {
	v, _ := parseDoc([]byte(benchDoc))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDocChecked holds the check appendDocChecked makes while printing to
// the same promise as the fast path: it never calls valid what the full
// validator refuses. Documents are parsed from the fuzzer's bytes and then
// given Go values an upcaster might add.
func FuzzDocChecked(f *testing.F) {
	for _, s := range append(docSeeds,
		`{"order_id":"o","customer":{"name":"n","email":"a@b.c"},"amount_cents":0,"currency":"EUR"}`,
		`{"order_id":"o","customer":{"name":"n"},"amount_cents":5,"currency":"EUR","items":[{"sku":"s","qty":1}],"placed_at":"2026-01-02T03:04:05Z"}`,
		`{"order_id":"","customer":{"name":"n"},"amount_cents":-1,"currency":"EU"}`,
		`{"order_id":"o","carrier":"x","tracking":null}`,
	) {
		f.Add([]byte(s), uint8(0))
	}
	reg := NewRegistry()
	if err := reg.LoadFS(os.DirFS("testdata/schemas")); err != nil {
		f.Fatal(err)
	}
	var nodes []*vschema
	for _, t := range reg.load().byName {
		for _, v := range t.versions {
			if v.fast != nil {
				nodes = append(nodes, v)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, extra uint8) {
		doc, err := parseDoc(data)
		if err != nil {
			return
		}
		if m, ok := doc.(map[string]any); ok {
			// Values upcasters add: Go integers and floats, nested maps.
			switch extra % 4 {
			case 1:
				m["amount_cents"] = int64(extra) - 100
			case 2:
				m["qty"] = float64(extra) / 3
			case 3:
				m["customer"] = map[string]any{"name": string(data[:min(len(data), 3)])}
			}
		}
		for _, v := range nodes {
			out, ok, err := appendDocChecked(nil, doc, v.fast)
			if err != nil || !ok {
				continue
			}
			back, err := parseDoc(out)
			if err != nil {
				t.Fatalf("printed %q does not parse: %v", out, err)
			}
			if verr := v.validateValue("T", back); verr != nil {
				t.Fatalf("v%d: the check while printing accepts %s, the validator refuses it: %v", v.n, out, verr)
			}
		}
	})
}

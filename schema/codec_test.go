package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

type fillInner struct {
	Name  string  `json:"name"`
	Email string  `json:"email,omitempty"`
	Score float32 `json:"score"`
}

// fillUnm implements json.Unmarshaler (keeping what it was given).
type fillUnm struct{ raw string }

func (u *fillUnm) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		return errors.New("no arrays")
	}
	u.raw = string(b)
	return nil
}

// fillText implements encoding.TextUnmarshaler.
type fillText struct{ text string }

func (t *fillText) UnmarshalText(b []byte) error {
	if len(b) > 5 {
		return errors.New("too long")
	}
	t.text = string(b)
	return nil
}

type fillAll struct {
	A    string                `json:"a"`
	B    int                   `json:"b"`
	C    int8                  `json:"c"`
	D    uint16                `json:"d"`
	E    float64               `json:"e"`
	F    bool                  `json:"f"`
	G    *fillInner            `json:"g"`
	H    []fillInner           `json:"h"`
	I    map[string]int        `json:"i"`
	J    any                   `json:"j"`
	K    []any                 `json:"k"`
	L    time.Time             `json:"l"`
	M    fillUnm               `json:"m"`
	N    *fillText             `json:"n"`
	O    fillText              `json:"o"`
	Name string                // no tag: "Name", and "name" by case
	P    json.Number           `json:"p"`
	Q    []byte                `json:"q"`
	R    json.RawMessage       `json:"r"`
	S    [2]int                `json:"s"`
	T    string                `json:"-"`
	U    map[string]*fillInner `json:"u"`
	V    uint8                 `json:"v"`
	W    []string              `json:"w"`
	X    float32               `json:"x"`
	Y    *int                  `json:"y"`
	Z    string                `json:"z,omitempty"`
	skip int
}

type fillNode struct {
	V    int        `json:"v"`
	Kids []fillNode `json:"kids"`
	Next *fillNode  `json:"next"`
}

type fillEmbedded struct {
	fillInner
	Extra int `json:"extra"`
}

var fillTypes = []reflect.Type{
	reflect.TypeFor[fillAll](), reflect.TypeFor[fillNode](), reflect.TypeFor[fillInner](),
	reflect.TypeFor[fillEmbedded](), reflect.TypeFor[map[string]any](), reflect.TypeFor[[]int](),
}

var fillSeeds = []string{
	`{"a":"x","b":-3,"c":127,"d":65535,"e":1.5e3,"f":true,"g":{"name":"n","score":0.25},"h":[{"name":"a"},{"NAME":"b"}],
	  "i":{"k":1},"j":{"n":[1,"s",null,true]},"k":[1.5,"x"],"l":"2026-03-14T15:09:26Z","m":{"any":"thing"},"n":"abc","o":"de",
	  "name":"by case","p":12,"q":"aGk=","r":{"raw":[1]},"s":[1,2],"T":"ignored","u":{"x":{"name":"y"},"z":null},"v":255,
	  "w":["a"],"x":3.4e38,"y":7,"z":"zz","unknown":{"deep":[1]}}`,
	`{"a":"x","b":-3,"c":127,"d":65535,"e":1.5e3,"f":true,"g":{"name":"n","score":0.25},"h":[{"name":"a"},{"NAME":"b"}],
	  "i":{"k":1},"j":{"n":[1,"s",null,true]},"k":[1.5,"x"],"l":"2026-03-14T15:09:26Z","m":{"any":"thing"},"n":"abc","o":"de",
	  "name":"by case","r":{"raw":[1]},"T":"ignored","u":{"x":{"name":"y"},"z":null},"v":255,
	  "w":["a"],"x":3.4e38,"y":7,"z":"zz","unknown":{"deep":[1]}}`,
	`{"b":1.5}`, `{"c":128}`, `{"d":-1}`, `{"x":1e39}`, `{"b":"1"}`, `{"a":1}`, `{"g":null,"h":null,"i":null,"j":null,"y":null}`,
	`{"name":"a","Name":"b"}`, `{"NAME":"x"}`, `{"m":[1]}`, `{"m":null}`, `{"n":"toolong"}`, `{"n":null}`, `{"o":5}`,
	`{"l":"not a time"}`, `{"l":null}`, `{"p":"12"}`, `{"s":[1,2,3]}`, `{"h":[{"score":1e40}]}`, `{"u":{"a":1}}`,
	`{"v":12,"kids":[{"v":1,"kids":[]}],"next":{"v":2,"next":null}}`, `{"fillInner":{"name":"x"},"extra":1,"name":"y"}`,
	`[1,2,3]`, `[1.5]`, `null`, `"s"`, `{"b":-0}`, `{"b":9223372036854775808}`, `{"e":-0.0}`,
}

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

// FuzzDocCodec holds parseDoc, which reads the documents upcasters get, to
// what a json.Decoder with UseNumber gives for the same bytes, and the
// printing of an upcast document to what encoding/json prints.
func FuzzDocCodec(f *testing.F) {
	for _, s := range docSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDocCodec(t, data)
	})
}

// TestDocCodecSeeds runs the seeds in every test run.
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
	checkPrint(t, got)
}

// checkPrint holds the printing of an upcast document to json.Marshal.
func checkPrint(t *testing.T, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, err := printDoc(v)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("%#v: printed as %s (%v), json.Marshal gives %s (%v)", v, got, err, want, wantErr)
	}
}

// Upcasters add Go values to documents: they are printed as json.Marshal
// prints them.
func TestPrintDocGoValues(t *testing.T) {
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
		checkPrint(t, v)
	}
	for _, v := range []any{math.NaN(), math.Inf(1), json.Number("1x"), map[string]any{"a": math.Inf(-1)}} {
		if _, err := printDoc(v); err == nil {
			t.Errorf("%#v: printed, json.Marshal refuses it", v)
		}
	}
}

// FuzzFill holds the decoding of a payload into a registered Go type to
// json.Unmarshal, for documents as upcasters leave them (Go numbers and
// invalid UTF-8 added): the same value, or an error where it errs.
func FuzzFill(f *testing.F) {
	for _, s := range fillSeeds {
		f.Add([]byte(s), uint8(0), int64(0))
	}
	f.Add([]byte(`{"a":"x"}`), uint8(1), int64(-129))
	f.Add([]byte(`{"a":"x"}`), uint8(3), int64(1<<53+1))
	f.Fuzz(func(t *testing.T, data []byte, key uint8, n int64) {
		checkFillWith(t, data, func(doc any) {
			m, ok := doc.(map[string]any)
			if !ok {
				return
			}
			k := string("bcdexv"[key%6])
			switch key / 6 % 7 {
			case 5:
				m["a"] = "bad \xff utf-8"
				return
			case 6:
				m["Na\xffme"] = "key"
				return
			case 0:
				m[k] = n
			case 1:
				m[k] = int(n)
			case 2:
				m[k] = float64(n) / 7
			case 3:
				m[k] = uint64(n)
			case 4:
				m[k] = int32(n)
			}
		})
	})
}

func TestFillSeeds(t *testing.T) {
	for _, s := range fillSeeds {
		checkFillWith(t, []byte(s), func(any) {})
		checkUnmarshal(t, []byte(s))
	}
}

func checkFillWith(t *testing.T, data []byte, change func(any)) {
	t.Helper()
	checkUnmarshal(t, data)
	doc, err := parseDoc(data)
	if err != nil {
		return
	}
	change(doc)
	printed, err := printDoc(doc)
	if err != nil {
		return
	}
	checkPrint(t, doc)
	checkUnmarshal(t, printed)
}

// checkUnmarshal holds unmarshal to json.Unmarshal on data, for each of
// fillTypes.
func checkUnmarshal(t *testing.T, data []byte) {
	t.Helper()
	for _, typ := range fillTypes {
		want := reflect.New(typ)
		wantErr := json.Unmarshal(data, want.Interface())
		got := reflect.New(typ)
		err := unmarshal(data, got.Interface())
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s from %q: unmarshal error %v, json.Unmarshal error %v", typ, data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got.Elem().Interface(), want.Elem().Interface()) {
			t.Fatalf("%s from %q:\nunmarshal      %#v\njson.Unmarshal %#v", typ, data, got.Elem().Interface(), want.Elem().Interface())
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
	var v any
	if err := decodeJSON([]byte(benchDoc), &v); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := printDoc(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDocAppendBaselineMarshal(b *testing.B) {
	var v any
	if err := decodeJSON([]byte(benchDoc), &v); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

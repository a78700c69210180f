package schema

import (
	"encoding/json"
	"errors"
	"reflect"
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

// FuzzFill holds fill to json.Unmarshal: whenever fill decodes a
// document, json.Unmarshal of the printed document succeeds with the same
// value.
func FuzzFill(f *testing.F) {
	for _, s := range fillSeeds {
		f.Add([]byte(s), uint8(0), int64(0))
	}
	f.Add([]byte(`{"a":"x"}`), uint8(1), int64(-129))
	f.Add([]byte(`{"a":"x"}`), uint8(3), int64(1<<53+1))
	f.Fuzz(func(t *testing.T, data []byte, key uint8, n int64) {
		checkFillWith(t, data, func(doc any) {
			// Go numbers an upcaster may add, into fields of each kind.
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
	filled := 0
	for _, s := range fillSeeds {
		filled += checkFill(t, []byte(s))
	}
	if filled < len(fillSeeds) {
		t.Fatalf("fill decoded only %d seeds into a type", filled)
	}
}

// checkFill returns how many types fill decoded data into.
func checkFill(t *testing.T, data []byte) int {
	t.Helper()
	return checkFillWith(t, data, func(any) {})
}

func checkFillWith(t *testing.T, data []byte, change func(any)) int {
	t.Helper()
	doc, err := parseDoc(data)
	if err != nil {
		return 0
	}
	change(doc)
	printed, err := appendDoc(nil, doc)
	if err != nil {
		return 0
	}
	n := 0
	for _, typ := range fillTypes {
		want := reflect.New(typ)
		wantErr := json.Unmarshal(printed, want.Interface())
		got := reflect.New(typ)
		if !fill(got.Elem(), doc) {
			continue
		}
		n++
		if wantErr != nil {
			t.Fatalf("%s: fill decodes %s, json.Unmarshal refuses it: %v", typ, printed, wantErr)
		}
		if !reflect.DeepEqual(got.Elem().Interface(), want.Elem().Interface()) {
			t.Fatalf("%s from %s:\nfill           %#v\njson.Unmarshal %#v", typ, printed, got.Elem().Interface(), want.Elem().Interface())
		}
	}
	return n
}

package rawjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

var seeds = []string{
	`{"order_id":"o-1","customer":"Ada","amount":12.5,"items":[{"sku":"a","qty":1}]}`,
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e-7`, `-12E+3`, `"x"`, ` {"a" : [ 1 , 2 ] } `,
	`{"a":1,"a":2}`, `{"":""}`, `{"a":{"b":{"c":[[],{}]}}}`,
	`"\u00e9\ud83d\ude00\ud800\udc00\ud800x\udc00\u0000\"\\\/\b\f\n\r\t"`,
	`"\ud800\u0041"`, `"\ud800\uzzzz"`, "\"\xff\xfe\xed\xa0\x80\xef\xbf\xbd\"", `"<&>` + "\u2028\u2029" + `"`,
	"\"\x01\"", `{"a":1}{}`, `{"a":1} x`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `+1`, `NaN`,
	`tru`, `nul`, `{"a"}`, `{"a":}`, `{,}`, `[`, `"abc`, `"\x"`, `"\u12"`, ``, ` `, `{"a" 1}`, `[1 2]`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
}

// FuzzValid holds Valid to json.Valid and AppendString to json.Marshal.
func FuzzValid(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { check(t, data) })
}

func TestSeeds(t *testing.T) {
	for _, s := range seeds {
		check(t, []byte(s))
	}
}

func check(t *testing.T, data []byte) {
	t.Helper()
	if got, want := Valid(data), json.Valid(data); got != want {
		t.Fatalf("Valid(%.80q) = %v, json.Valid %v", data, got, want)
	}
	want, err := json.Marshal(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendString([]byte("x"), string(data)); !bytes.Equal(got[1:], want) || got[0] != 'x' {
		t.Fatalf("AppendString(%q) = %q, json.Marshal %q", data, got[1:], want)
	}
	if len(data) < 64 && IsNumber(data) != isNumberStd(data) {
		t.Fatalf("IsNumber(%q) = %v", data, IsNumber(data))
	}
}

// isNumberStd: a number by encoding/json is a valid document that decodes
// as a json.Number and is not surrounded by white space.
func isNumberStd(b []byte) bool {
	if len(b) == 0 || !json.Valid(b) || bytes.TrimSpace(b) == nil || len(bytes.TrimSpace(b)) != len(b) {
		return false
	}
	c := b[0]
	return c == '-' || c >= '0' && c <= '9'
}

func TestNoAllocations(t *testing.T) {
	data := []byte(seeds[0])
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		_ = Valid(data)
		buf = AppendString(buf[:0], "<a é \u2028>")
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// go test -run '^$' -bench . ./internal/rawjson/
func BenchmarkValid(b *testing.B) {
	data := []byte(seeds[0])
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if !Valid(data) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkValidBaselineStd(b *testing.B) {
	data := []byte(seeds[0])
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if !json.Valid(data) {
			b.Fatal("invalid")
		}
	}
}

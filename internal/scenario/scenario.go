// Package scenario is what the given/when/then fixtures (aggregatetest,
// workflowtest) share: the round trip of an event through a registry, as
// a save and a load make it, and what they print when a scenario fails: a
// value as its Go type and indented JSON, a block of lines indented under
// a message, and the line diff of what was wanted and what came.
//
// Contract: RoundTrip gives what a load of ev, saved through reg, decodes
// to (ev itself when reg is nil), or the error that save or load would
// return. Value is deterministic for a value JSON can encode (map keys
// sorted, as encoding/json does) and never fails: a value JSON refuses is
// printed with %+v and the reason. Diff(a, b) returns every line of a and
// b once, in order: lines of both prefixed "    ", lines only in a
// "  - ", lines only in b "  + ", chosen by a longest common subsequence
// (quadratic in the line counts, plenty for a scenario's few lines).
package scenario

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// RoundTrip encodes ev through reg and decodes the result, as a save and
// a load would. With a nil reg it returns ev.
func RoundTrip(reg *schema.Registry, ev any) (any, error) {
	if reg == nil {
		return ev, nil
	}
	ne, err := reg.Encode(ev)
	if err != nil {
		return nil, err
	}
	return reg.Decode(eventstore.Event{Type: ne.Type, SchemaVersion: ne.SchemaVersion, Data: ne.Data})
}

// Value prints v as its Go type and its indented JSON, so that a line
// diff points at the field that differs.
func Value(v any) string {
	name := "<nil>"
	if t := reflect.TypeOf(v); t != nil {
		name = t.String()
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		data = fmt.Appendf(nil, "%+v (no JSON: %v)", v, err)
	}
	return name + " " + string(data)
}

// Indent indents each line of s by four spaces; an empty s is printed as
// empty (such as "(none)"), indented.
func Indent(s, empty string) string {
	if s == "" {
		return "    " + empty + "\n"
	}
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}

// Diff returns the line diff of a and b: lines of both prefixed "    ",
// lines only in a "  - ", lines only in b "  + ".
func Diff(a, b string) string {
	x, y := lines(a), lines(b)
	// lcs[i][j] is the length of the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out.WriteString("    " + x[i] + "\n")
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] > lcs[i+1][j]):
			out.WriteString("  + " + y[j] + "\n")
			j++
		default:
			out.WriteString("  - " + x[i] + "\n")
			i++
		}
	}
	return out.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

package shred

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// Redacted replaces, in a handler's error text, each personal value the
// handler was handed opened (see Redact).
const Redacted = "[personal]"

// Redact returns text with every personal value that opening put into
// opened (the events stored, opened by Open) replaced by Redacted, in the
// forms an error quotes it: as is, JSON-encoded and Go-quoted, each string
// inside a personal object or array too. It is what makes a Shredder an
// eventstore.Redactor: a subscription records a failing handler's error
// text so (its last error, a dead letter), after the batch's transaction
// ended, where the key lock cannot order it before a forget.
func (s *Shredder) Redact(stored, opened []eventstore.Event, text string) string {
	var values []string
	for i := range min(len(stored), len(opened)) {
		if bytes.Equal(stored[i].Data, opened[i].Data) {
			continue
		}
		var ptrs []string
		_ = walk(stored[i].Data, func(_ string, first byte) bool { return first == '"' },
			func(ptr string, start, end int) error {
				if bytes.HasPrefix(stored[i].Data[start:end], prefixJSON) {
					ptrs = append(ptrs, ptr)
				}
				return nil
			})
		data := opened[i].Data
		_ = walk(data, func(ptr string, _ byte) bool { return slices.Contains(ptrs, ptr) },
			func(_ string, start, end int) error {
				values = appendForms(values, data[start:end])
				return nil
			})
	}
	// Longest first, so that a value inside another is not replaced first.
	slices.SortFunc(values, func(a, b string) int { return len(b) - len(a) })
	for _, v := range slices.Compact(values) {
		text = strings.ReplaceAll(text, v, Redacted)
	}
	return text
}

// appendForms appends the forms of the JSON value raw that an error text
// may quote: for a string, its text, JSON and Go quoting; for a number,
// its text; an object's or array's strings and numbers each so. An
// erased value (schema.Erased, null) and booleans are no one's data.
func appendForms(out []string, raw []byte) []string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return out
	}
	var add func(v any)
	add = func(v any) {
		switch v := v.(type) {
		case string:
			if v != "" && v != schema.Erased {
				b, _ := json.Marshal(v)
				out = append(out, v, string(b), strconv.Quote(v))
			}
		case float64:
			b, _ := json.Marshal(v)
			out = append(out, string(b))
		case map[string]any:
			for _, x := range v {
				add(x)
			}
		case []any:
			for _, x := range v {
				add(x)
			}
		}
	}
	add(v)
	return out
}

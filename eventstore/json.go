package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/strata-go/strata/internal/rawjson"
)

// The hand-written JSON of the event store: the validation of events' data
// and the codec of the metadata column.

// encodeMetadata returns the JSON of m.Values, or nil when there are none.
// Correlation and causation IDs have columns of their own. The output is
// what encoding/json would write (keys sorted, the same escapes), without
// its reflection: it is on every append's path.
func encodeMetadata(m Metadata) ([]byte, error) {
	if !validText(m.CorrelationID) || !validText(m.CausationID) {
		return nil, errors.New("correlation or causation ID is not valid UTF-8 or contains a NUL byte")
	}
	if len(m.CorrelationID) > MaxCorrelationIDLength || len(m.CausationID) > MaxCorrelationIDLength {
		return nil, fmt.Errorf("correlation or causation ID is longer than %d bytes", MaxCorrelationIDLength)
	}
	if len(m.Values) == 0 {
		return nil, nil
	}
	var scratch [8]string
	keys := scratch[:0]
	size := 2
	for k, v := range m.Values {
		if k == "" || !validText(k) || !validText(v) {
			return nil, fmt.Errorf("key %q: keys must be non-empty, and keys and values valid UTF-8 without NUL bytes", k)
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = rawjson.AppendString(out, k)
		out = append(out, ':')
		out = rawjson.AppendString(out, m.Values[k])
	}
	return append(out, '}'), nil
}

// decodeMetadata reads the metadata column: a JSON object of strings, as
// encodeMetadata writes it. doc is a string copy of raw, the column's
// bytes. Keys and values without escapes are taken as substrings of doc,
// and keys are shared between events; anything else (escapes, spaces,
// other value types) is left to encoding/json.
func (sc *eventScanner) decodeMetadata(doc string, raw []byte) (map[string]string, error) {
	if m, ok := sc.decodeSimpleMetadata(doc, raw); ok {
		return m, nil
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeSimpleMetadata parses {"k":"v",...} without whitespace or escapes.
// It returns false for anything else, including invalid JSON.
func (sc *eventScanner) decodeSimpleMetadata(doc string, raw []byte) (map[string]string, bool) {
	s := rawjson.Scanner{Data: raw}
	if !s.Byte('{') {
		return nil, false
	}
	m := make(map[string]string, strings.Count(doc, `":"`))
	if s.Byte('}') {
		return m, s.I == len(raw)
	}
	for {
		k, ok := plainString(&s, doc)
		if !ok || !s.Byte(':') {
			return nil, false
		}
		v, ok := plainString(&s, doc)
		if !ok {
			return nil, false
		}
		m[sc.key(k)] = v
		if s.Byte('}') {
			return m, s.I == len(raw)
		}
		if !s.Byte(',') {
			return nil, false
		}
	}
}

// plainString moves s past a string without escapes and returns its text,
// as a substring of doc (the string copy of s.Data).
func plainString(s *rawjson.Scanner, doc string) (string, bool) {
	start := s.I
	escaped, _, ok := s.String()
	if !ok || escaped {
		return "", false
	}
	return doc[start+1 : s.I-1], true
}

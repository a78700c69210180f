package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The hand-written JSON of the event store: the validation of events' data
// and the codec of the metadata column.

// validJSON reports whether b is one JSON value (with optional surrounding
// whitespace): what json.Valid reports, including its nesting limit, in a
// single pass without a function call per byte. Checking every event's
// data is on every append's path. Bytes of 0x80 and above are accepted in
// strings here; UTF-8 validity is checked apart.
func validJSON(b []byte) bool {
	const maxDepth = 10000 // as encoding/json
	var stack []byte       // open containers: '{' or '['
	var scratch [32]byte
	stack = scratch[:0]
	i := skipSpace(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxDepth {
				return false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']'
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				if i = jsonMember(b, i); i < 0 {
					return false
				}
			}
			continue
		case c == '"':
			if i = jsonString(b, i); i < 0 {
				return false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i = jsonNumber(b, i); i < 0 {
				return false
			}
		case c == 't':
			if !hasPrefixAt(b, i, "true") {
				return false
			}
			i += 4
		case c == 'f':
			if !hasPrefixAt(b, i, "false") {
				return false
			}
			i += 5
		case c == 'n':
			if !hasPrefixAt(b, i, "null") {
				return false
			}
			i += 4
		default:
			return false
		}
		// After a value: close containers, or go on to the next element.
		for {
			i = skipSpace(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return false
			}
			i = skipSpace(b, i+1)
			if top == '{' {
				if i = jsonMember(b, i); i < 0 {
					return false
				}
			}
			break
		}
	}
}

// jsonMember reads `"key" :` at i and returns where the value starts, or
// -1.
func jsonMember(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = jsonString(b, i); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

// jsonString reads the string starting with the quote at i and returns the
// index after its closing quote, or -1.
func jsonString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// jsonNumber reads the number starting at i and returns the index after
// it, or -1.
func jsonNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefixAt(b []byte, i int, word string) bool {
	return len(b)-i >= len(word) && string(b[i:i+len(word)]) == word
}

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
		out = appendJSONString(out, k)
		out = append(out, ':')
		out = appendJSONString(out, m.Values[k])
	}
	return append(out, '}'), nil
}

// appendJSONString appends s, valid UTF-8, as a JSON string with the
// escapes encoding/json uses by default (HTML characters, U+2028 and
// U+2029 included).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		b := s[i]
		var esc string
		switch {
		case b == '"':
			esc = `\"`
		case b == '\\':
			esc = `\\`
		case b == '\n':
			esc = `\n`
		case b == '\r':
			esc = `\r`
		case b == '\t':
			esc = `\t`
		case b == '\b':
			esc = `\b`
		case b == '\f':
			esc = `\f`
		case b < 0x20 || b == '<' || b == '>' || b == '&':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			start = i + 1
			continue
		case b == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9):
			// U+2028 and U+2029.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[s[i+2]-0xA0])
			i += 2
			start = i + 1
			continue
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// decodeMetadata reads the metadata column: a JSON object of strings, as
// encodeMetadata writes it. Keys and values without escapes are taken as
// substrings of doc, and keys are shared between events; anything else
// (escapes, spaces, other value types) is left to encoding/json.
func (sc *eventScanner) decodeMetadata(doc string) (map[string]string, error) {
	if m, ok := sc.decodeSimpleMetadata(doc); ok {
		return m, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeSimpleMetadata parses {"k":"v",...} without whitespace or escapes.
// It returns false for anything else, including invalid JSON.
func (sc *eventScanner) decodeSimpleMetadata(doc string) (map[string]string, bool) {
	if len(doc) < 2 || doc[0] != '{' || doc[len(doc)-1] != '}' {
		return nil, false
	}
	n := strings.Count(doc, `":"`)
	if n == 0 {
		return map[string]string{}, doc == "{}"
	}
	m := make(map[string]string, n)
	rest := doc[1:]
	for {
		k, r, ok := simpleJSONString(rest)
		if !ok || len(r) == 0 || r[0] != ':' {
			return nil, false
		}
		v, r, ok := simpleJSONString(r[1:])
		if !ok || len(r) == 0 {
			return nil, false
		}
		m[sc.key(k)] = v
		if r[0] == '}' {
			if len(r) != 1 {
				return nil, false
			}
			return m, true
		}
		if r[0] != ',' {
			return nil, false
		}
		rest = r[1:]
	}
}

// simpleJSONString reads a JSON string without escapes at the start of s,
// returning its contents and what follows it.
func simpleJSONString(s string) (str, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[1:i], s[i+1:], true
		case c == '\\' || c < 0x20:
			return "", "", false
		}
	}
	return "", "", false
}

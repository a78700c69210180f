package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The documents upcasters work on are parsed and printed here rather than
// by encoding/json, which spends most of a decode through upcasters on
// reflection and small allocations. parseDoc gives exactly what a
// json.Decoder with UseNumber gives for the same bytes (map[string]any,
// []any, string, json.Number, bool, nil), and appendDoc prints exactly what
// json.Marshal prints for such a document; FuzzDocCodec holds both to that.

// maxDocDepth is encoding/json's nesting limit.
const maxDocDepth = 10000

// docParser parses one JSON document. Every string of the result is made
// from arena, a copy of the text that is never written again after a
// string is taken from it, so a document costs one allocation for all its
// strings.
type docParser struct {
	data  []byte
	i     int
	arena []byte
}

// errDoc is returned for any malformed document; the caller that needs a
// precise message asks encoding/json (see parseDocErr).
var errDoc = errors.New("malformed JSON")

// parseDoc parses data, one JSON document with optional surrounding white
// space. Its errors say only that the document is malformed: use
// decodeJSON on the same bytes for encoding/json's description.
func parseDoc(data []byte) (any, error) {
	p := docParser{data: data, arena: make([]byte, 0, len(data))}
	p.ws()
	v, ok := p.value(0)
	if !ok {
		return nil, errDoc
	}
	p.ws()
	if p.i != len(data) {
		return nil, errDoc
	}
	return v, nil
}

func (p *docParser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *docParser) value(depth int) (any, bool) {
	if p.i >= len(p.data) {
		return nil, false
	}
	switch c := p.data[p.i]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, ok := p.str()
		return s, ok
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		n, ok := p.number()
		return n, ok
	}
	return nil, false
}

func (p *docParser) literal(lit string) bool {
	if len(p.data)-p.i < len(lit) || string(p.data[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.i += len(lit)
	return true
}

func (p *docParser) object(depth int) (any, bool) {
	if depth > maxDocDepth {
		return nil, false
	}
	p.i++ // '{'
	m := make(map[string]any)
	p.ws()
	if p.i < len(p.data) && p.data[p.i] == '}' {
		p.i++
		return m, true
	}
	for {
		p.ws()
		if p.i >= len(p.data) || p.data[p.i] != '"' {
			return nil, false
		}
		k, ok := p.str()
		if !ok {
			return nil, false
		}
		p.ws()
		if p.i >= len(p.data) || p.data[p.i] != ':' {
			return nil, false
		}
		p.i++
		p.ws()
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		m[k] = v
		p.ws()
		if p.i >= len(p.data) {
			return nil, false
		}
		switch p.data[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return m, true
		default:
			return nil, false
		}
	}
}

func (p *docParser) array(depth int) (any, bool) {
	if depth > maxDocDepth {
		return nil, false
	}
	p.i++ // '['
	p.ws()
	if p.i < len(p.data) && p.data[p.i] == ']' {
		p.i++
		return []any{}, true
	}
	a := make([]any, 0, 4)
	for {
		p.ws()
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		p.ws()
		if p.i >= len(p.data) {
			return nil, false
		}
		switch p.data[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return a, true
		default:
			return nil, false
		}
	}
}

// take returns the arena bytes from start on as a string.
func (p *docParser) take(start int) string {
	if len(p.arena) == start {
		return ""
	}
	return unsafe.String(&p.arena[start], len(p.arena)-start)
}

// str parses a string at p.i (its opening quote), decoding escapes the way
// encoding/json does: invalid UTF-8 and lone surrogates become U+FFFD.
func (p *docParser) str() (string, bool) {
	p.i++ // '"'
	start := len(p.arena)
	for {
		// Copy the run of plain bytes in one go.
		j := p.i
		for j < len(p.data) {
			c := p.data[j]
			if c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
				break
			}
			j++
		}
		p.arena = append(p.arena, p.data[p.i:j]...)
		p.i = j
		if p.i >= len(p.data) {
			return "", false
		}
		switch c := p.data[p.i]; {
		case c == '"':
			p.i++
			return p.take(start), true
		case c < 0x20:
			return "", false
		case c == '\\':
			if !p.escape() {
				return "", false
			}
		default:
			r, size := utf8.DecodeRune(p.data[p.i:])
			if r == utf8.RuneError && size == 1 {
				p.arena = utf8.AppendRune(p.arena, utf8.RuneError)
			} else {
				p.arena = append(p.arena, p.data[p.i:p.i+size]...)
			}
			p.i += size
		}
	}
}

// escape decodes the escape sequence at p.i into the arena.
func (p *docParser) escape() bool {
	if p.i+1 >= len(p.data) {
		return false
	}
	c := p.data[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		p.arena = append(p.arena, c)
	case 'b':
		p.arena = append(p.arena, '\b')
	case 'f':
		p.arena = append(p.arena, '\f')
	case 'n':
		p.arena = append(p.arena, '\n')
	case 'r':
		p.arena = append(p.arena, '\r')
	case 't':
		p.arena = append(p.arena, '\t')
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return false
		}
		if utf16.IsSurrogate(r) {
			// A pair is two escapes in a row; anything else leaves the
			// surrogate alone, which is not a character.
			if r2, ok2 := p.nextSurrogate(); ok2 {
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					p.i += 6
					r = dec
				} else {
					r = utf8.RuneError
				}
			} else {
				r = utf8.RuneError
			}
		}
		p.arena = utf8.AppendRune(p.arena, r)
	default:
		return false
	}
	return true
}

// hex4 reads the four hex digits of a \u escape at p.i.
func (p *docParser) hex4() (rune, bool) {
	if len(p.data)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}

// nextSurrogate peeks at a \uXXXX escape at p.i without consuming it.
func (p *docParser) nextSurrogate() (rune, bool) {
	if len(p.data)-p.i < 6 || p.data[p.i] != '\\' || p.data[p.i+1] != 'u' {
		return 0, false
	}
	save := p.i
	p.i += 2
	r, ok := p.hex4()
	p.i = save
	return r, ok
}

// number parses a number at p.i by the JSON grammar and returns its text.
func (p *docParser) number() (json.Number, bool) {
	end := numberEnd(p.data, p.i)
	if end < 0 {
		return "", false
	}
	a := len(p.arena)
	p.arena = append(p.arena, p.data[p.i:end]...)
	p.i = end
	return json.Number(p.take(a)), true
}

// numberEnd returns where the number starting at d[i] ends, or -1 when
// the bytes there are not a number by the JSON grammar.
func numberEnd(d []byte, i int) int {
	digits := func() bool {
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return false
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		return true
	}
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case !digits():
		return -1
	}
	if i < len(d) && d[i] == '.' {
		i++
		if !digits() {
			return -1
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			return -1
		}
	}
	return i
}

// appendDoc appends the JSON encoding of v to b, byte for byte what
// json.Marshal(v) gives. It prints the types parseDoc produces and the
// ones upcasters commonly add itself, and hands any other value to
// json.Marshal.
func appendDoc(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendDocString(b, v), nil
	case json.Number:
		if v == "" {
			return append(b, '0'), nil
		}
		if !isJSONNumber(string(v)) {
			return b, fmt.Errorf("json: invalid number literal %q", string(v))
		}
		return append(b, v...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case map[string]any:
		return appendDocObject(b, v)
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendDoc(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case float64:
		return appendDocFloat(b, v)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, out...), nil
}

func appendDocObject(b []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	// Sort the keys, as json.Marshal does; small objects use the stack.
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendDocString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendDoc(b, m[k]); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// appendDocFloat prints f as encoding/json does.
func appendDocFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendDocString quotes s as json.Marshal does: with HTML characters,
// U+2028 and U+2029 escaped and invalid UTF-8 replaced by U+FFFD.
func appendDocString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// isJSONNumber reports whether s is a number by the JSON grammar.
func isJSONNumber(s string) bool {
	return numberEnd(unsafe.Slice(unsafe.StringData(s), len(s)), 0) == len(s)
}

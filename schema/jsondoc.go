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

	"github.com/strata-go/strata/internal/rawjson"
)

// The documents upcasters work on are parsed and printed here rather than
// by encoding/json, which spends most of a decode through upcasters on
// reflection and small allocations. parseDoc gives exactly what a
// json.Decoder with UseNumber gives for the same bytes (map[string]any,
// []any, string, json.Number, bool, nil), and appendDoc prints exactly what
// json.Marshal prints for such a document; FuzzDocCodec holds both to that.

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
	sc := rawjson.Scanner{Data: p.data, I: p.i}
	sc.Space()
	p.i = sc.I
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
		sc := rawjson.Scanner{Data: p.data, I: p.i}
		if !sc.Number() {
			return nil, false
		}
		end := sc.I
		// Small integers are common (counts, quantities): share their
		// boxed values instead of allocating one each time.
		if end-p.i <= 2 {
			if v := smallNumber(p.data[p.i:end]); v != nil {
				p.i = end
				return v, true
			}
		}
		a := len(p.arena)
		p.arena = append(p.arena, p.data[p.i:end]...)
		p.i = end
		return json.Number(p.take(a)), true
	}
	return nil, false
}

// smallNumbers holds json.Number("0") to json.Number("99"), boxed once.
var smallNumbers = func() (t [100]any) {
	for i := range t {
		t[i] = json.Number(strconv.Itoa(i))
	}
	return t
}()

// smallNumber returns the shared boxed json.Number for the text of an
// integer from 0 to 99 written without a leading zero, or nil.
func smallNumber(b []byte) any {
	switch {
	case len(b) == 1 && b[0] >= '0' && b[0] <= '9':
		return smallNumbers[b[0]-'0']
	case len(b) == 2 && b[0] >= '1' && b[0] <= '9' && b[1] >= '0' && b[1] <= '9':
		return smallNumbers[(b[0]-'0')*10+b[1]-'0']
	}
	return nil
}

func (p *docParser) literal(lit string) bool {
	sc := rawjson.Scanner{Data: p.data, I: p.i}
	ok := sc.Literal(lit)
	p.i = sc.I
	return ok
}

func (p *docParser) object(depth int) (any, bool) {
	if depth > rawjson.MaxDepth {
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
	if depth > rawjson.MaxDepth {
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

// appendDoc appends the JSON encoding of v to b, byte for byte what
// json.Marshal(v) gives. It prints the types parseDoc produces and the
// ones upcasters commonly add itself, and hands any other value to
// json.Marshal.
func appendDoc(b []byte, v any) ([]byte, error) {
	p := docPrinter{b: b}
	p.value(v, nil, 0)
	return p.b, p.err
}

// appendDocChecked is appendDoc that also reports whether the document is
// certainly valid against n, the fast path of a schema, as n.fastValid
// would on the printed bytes (false: not known), without a second pass.
func appendDocChecked(b []byte, v any, n *fastNode) ([]byte, bool, error) {
	p := docPrinter{b: b, check: true, ok: true}
	p.value(v, n, 0)
	return p.b, p.ok, p.err
}

// docPrinter prints a document and, with check, checks it against fast
// path nodes as it goes: ok turns false at the first value that is not
// certainly valid (the printing goes on).
type docPrinter struct {
	b     []byte
	err   error // the first value json.Marshal refuses
	check bool
	ok    bool
}

// fail records that the document is not known to be valid.
func (p *docPrinter) fail() { p.ok = false }

// value prints v, checked against n (nil: anything) while p.ok holds.
func (p *docPrinter) value(v any, n *fastNode, depth int) {
	checking := p.check && p.ok && n != nil
	if checking && (depth > maxFastDepth || n.never) {
		p.fail()
		checking = false
	}
	start := len(p.b)
	switch v := v.(type) {
	case nil:
		p.b = append(p.b, "null"...)
		if checking && !n.allows(tNull) {
			p.fail()
		}
	case string:
		p.b = rawjson.AppendString(p.b, v)
		if checking && (!n.allows(tString) || n.hasStringRules() && !n.stringOK(v, false)) {
			p.fail()
		}
	case json.Number:
		valid := v == "" || rawjson.IsNumber([]byte(v))
		switch {
		case v == "":
			p.b = append(p.b, '0')
		case !valid:
			p.setErr(fmt.Errorf("json: invalid number literal %q", string(v)))
		default:
			p.b = append(p.b, v...)
		}
		if checking && (!valid || !n.numberOK(p.b[start:])) {
			p.fail()
		}
	case bool:
		p.b = strconv.AppendBool(p.b, v)
		if checking && !n.allows(tBool) {
			p.fail()
		}
	case map[string]any:
		p.object(v, n, checking, depth)
	case []any:
		p.array(v, n, checking, depth)
	case int:
		p.int(int64(v), n, checking)
	case int64:
		p.int(v, n, checking)
	case int32:
		p.int(int64(v), n, checking)
	case uint64:
		p.b = strconv.AppendUint(p.b, v, 10)
		if checking && (v > math.MaxInt64 || !n.numberOK(p.b[start:])) {
			p.fail()
		}
	case float64:
		var err error
		if p.b, err = appendDocFloat(p.b, v); err != nil {
			p.setErr(err)
		}
		if checking && (p.err != nil || !n.numberOK(p.b[start:])) {
			p.fail()
		}
	default:
		out, err := json.Marshal(v)
		if err != nil {
			p.setErr(err)
		}
		p.b = append(p.b, out...)
		if checking {
			p.fail() // checked by the validator, from the printed bytes
		}
	}
	if checking && p.ok && len(n.also) > 0 {
		// $ref and allOf targets: check the printed value against each.
		for _, a := range n.also {
			sc := scanner{rawjson.Scanner{Data: p.b[start:]}}
			if !sc.value(a, depth+1) || sc.I != len(sc.Data) {
				p.fail()
				break
			}
		}
	}
}

func (p *docPrinter) setErr(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *docPrinter) int(i int64, n *fastNode, checking bool) {
	start := len(p.b)
	p.b = strconv.AppendInt(p.b, i, 10)
	if checking && !n.numberOK(p.b[start:]) {
		p.fail()
	}
}

func (p *docPrinter) array(a []any, n *fastNode, checking bool, depth int) {
	if a == nil {
		p.b = append(p.b, "null"...)
		if checking && !n.allows(tNull) {
			p.fail()
		}
		return
	}
	var items *fastNode
	if checking {
		if !n.allows(tArray) || n.minItems >= 0 && len(a) < n.minItems || n.maxItems >= 0 && len(a) > n.maxItems {
			p.fail()
		}
		items = n.items
	}
	p.b = append(p.b, '[')
	for i, e := range a {
		if i > 0 {
			p.b = append(p.b, ',')
		}
		p.value(e, items, depth+1)
	}
	p.b = append(p.b, ']')
}

func (p *docPrinter) object(m map[string]any, n *fastNode, checking bool, depth int) {
	if m == nil {
		p.b = append(p.b, "null"...)
		if checking && !n.allows(tNull) {
			p.fail()
		}
		return
	}
	if checking && (!n.allows(tObject) || n.maxProps >= 0 && len(m) > n.maxProps) {
		p.fail()
	}
	// Sort the keys, as json.Marshal does; small objects use the stack.
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var seen uint64
	p.b = append(p.b, '{')
	for i, k := range keys {
		if i > 0 {
			p.b = append(p.b, ',')
		}
		p.b = rawjson.AppendString(p.b, k)
		p.b = append(p.b, ':')
		var child *fastNode
		if checking && p.ok {
			child = n.addl
			if prop, named := n.prop(unsafe.Slice(unsafe.StringData(k), len(k))); named {
				child = prop.node
				if prop.req >= 0 {
					seen |= 1 << prop.req
				}
			} else if n.addlForbid {
				p.fail()
			}
		}
		p.value(m[k], child, depth+1)
	}
	p.b = append(p.b, '}')
	if checking && seen != (uint64(1)<<n.required)-1 {
		p.fail()
	}
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

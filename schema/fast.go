package schema

import (
	"math"
	"math/big"
	"regexp"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// The fast path validates a payload straight from its JSON bytes, without
// building a document or allocating, for the keywords event schemas mostly
// use. It answers only "certainly valid": whenever a payload fails, or
// uses something the fast path does not handle (an escaped string in a
// constrained field, a number with an exponent, …), the validator of
// santhosh-tekuri/jsonschema decides and explains. A schema that uses any
// keyword outside the supported set has no fast path at all.

// Type bits of fastNode.types.
const (
	tNull uint8 = 1 << iota
	tBool
	tInteger
	tNumber // includes integers
	tString
	tArray
	tObject
)

// maxFastDepth bounds the nesting the fast path follows before giving up.
const maxFastDepth = 200

// fastNode is a compiled schema (or subschema) the fast path can check.
type fastNode struct {
	never bool  // the false schema
	types uint8 // 0: any type

	// objects
	props      map[string]fastProp
	propList   []namedProp // props again, for a linear search when there are few
	required   int         // number of required properties
	addlForbid bool
	addl       *fastNode
	maxProps   int // -1: none

	// arrays
	items              *fastNode
	minItems, maxItems int // -1: none

	// strings
	minLen, maxLen int // -1: none
	pattern        *regexp.Regexp
	format         func(string) bool
	enum           []string // nil: none; only all-string enums are supported

	// numbers: integer bounds only
	min, max, exMin, exMax *int64

	// also holds for the same value: $ref and allOf targets
	also []*fastNode
}

// namedProp is an entry of fastNode.propList.
type namedProp struct {
	name string
	fastProp
}

// maxPropList is the most properties searched linearly: below it, comparing
// names beats hashing them.
const maxPropList = 12

// prop looks up the property key names.
func (n *fastNode) prop(key []byte) (fastProp, bool) {
	if n.propList != nil {
		for i := range n.propList {
			if n.propList[i].name == string(key) {
				return n.propList[i].fastProp, true
			}
		}
		return fastProp{}, false
	}
	p, ok := n.props[string(key)]
	return p, ok
}

// fastProp is a property an object schema names.
type fastProp struct {
	node *fastNode // nil: no constraint
	req  int       // bit index among the required properties, or -1
}

// hasStringRules reports whether strings must be decoded to be checked.
func (n *fastNode) hasStringRules() bool {
	return n.minLen >= 0 || n.maxLen >= 0 || n.pattern != nil || n.format != nil || n.enum != nil
}

// compileFast returns the fast path of s, or nil when s uses a keyword it
// does not support.
func compileFast(s *jsonschema.Schema) *fastNode {
	n, ok := fastFrom(s, map[*jsonschema.Schema]*fastNode{})
	if !ok {
		return nil
	}
	return n
}

func fastFrom(s *jsonschema.Schema, memo map[*jsonschema.Schema]*fastNode) (*fastNode, bool) {
	if n, ok := memo[s]; ok {
		return n, true
	}
	if s.Not != nil || len(s.AnyOf) > 0 || len(s.OneOf) > 0 || s.If != nil ||
		s.RecursiveRef != nil || s.DynamicRef != nil || s.PropertyNames != nil || s.RegexProperties ||
		len(s.PatternProperties) > 0 || len(s.Dependencies) > 0 || len(s.DependentRequired) > 0 ||
		len(s.DependentSchemas) > 0 || s.UnevaluatedProperties != nil || s.UnevaluatedItems != nil ||
		s.UniqueItems || s.AdditionalItems != nil || len(s.PrefixItems) > 0 || s.Contains != nil ||
		s.ContentEncoding != "" || s.ContentMediaType != "" || s.ContentSchema != nil ||
		s.MultipleOf != nil || len(s.Constant) > 0 || len(s.Extensions) > 0 || s.MinProperties != -1 ||
		len(s.Required) > 64 {
		return nil, false
	}
	n := &fastNode{maxProps: s.MaxProperties, minItems: s.MinItems, maxItems: s.MaxItems,
		minLen: s.MinLength, maxLen: s.MaxLength, pattern: s.Pattern}
	memo[s] = n
	if s.Always != nil {
		n.never = !*s.Always
	}
	for _, t := range s.Types {
		n.types |= map[string]uint8{"null": tNull, "boolean": tBool, "integer": tInteger,
			"number": tNumber | tInteger, "string": tString, "array": tArray, "object": tObject}[t]
	}
	if s.Format != "" {
		// The registry's compilers assert formats and add none of their
		// own, so the library uses its global table.
		if n.format = fastFormats[s.Format]; n.format == nil {
			f := jsonschema.Formats[s.Format]
			if f == nil {
				return nil, false
			}
			n.format = func(s string) bool { return f(s) }
		}
	}
	if s.Enum != nil {
		n.enum = []string{}
		for _, e := range s.Enum {
			str, ok := e.(string)
			if !ok {
				return nil, false
			}
			n.enum = append(n.enum, str)
		}
	}
	var ok bool
	for _, b := range []struct {
		r   *big.Rat
		dst **int64
	}{{s.Minimum, &n.min}, {s.Maximum, &n.max}, {s.ExclusiveMinimum, &n.exMin}, {s.ExclusiveMaximum, &n.exMax}} {
		if b.r == nil {
			continue
		}
		if !b.r.IsInt() || !b.r.Num().IsInt64() {
			return nil, false
		}
		v := b.r.Num().Int64()
		*b.dst = &v
	}
	if len(s.Properties) > 0 || len(s.Required) > 0 {
		n.props = make(map[string]fastProp, len(s.Properties)+len(s.Required))
		for name, sub := range s.Properties {
			p := fastProp{req: -1}
			if p.node, ok = fastFrom(sub, memo); !ok {
				return nil, false
			}
			n.props[name] = p
		}
		for _, name := range s.Required {
			p, seen := n.props[name]
			if !seen {
				p.req = -1
			}
			if p.req >= 0 {
				continue // listed twice
			}
			p.req = n.required
			n.required++
			n.props[name] = p
		}
		if len(n.props) <= maxPropList {
			for name, p := range n.props {
				n.propList = append(n.propList, namedProp{name, p})
			}
		}
	}
	switch a := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		n.addlForbid = !a
	case *jsonschema.Schema:
		if n.addl, ok = fastFrom(a, memo); !ok {
			return nil, false
		}
	default:
		return nil, false
	}
	items := s.Items2020
	switch it := s.Items.(type) {
	case nil:
	case *jsonschema.Schema:
		items = it
	default:
		return nil, false
	}
	if items != nil {
		if n.items, ok = fastFrom(items, memo); !ok {
			return nil, false
		}
	}
	for _, sub := range append([]*jsonschema.Schema{s.Ref}, s.AllOf...) {
		if sub == nil {
			continue
		}
		f, ok := fastFrom(sub, memo)
		if !ok {
			return nil, false
		}
		n.also = append(n.also, f)
	}
	return n, true
}

// fastValid reports whether data is certainly one JSON document valid
// against n. False means "not known": ask the full validator.
func (n *fastNode) fastValid(data []byte) bool {
	sc := scanner{data: data}
	sc.ws()
	if !sc.value(n, 0) {
		return false
	}
	sc.ws()
	return sc.i == len(data)
}

// scanner walks JSON bytes.
type scanner struct {
	data []byte
	i    int
}

func (sc *scanner) ws() {
	for sc.i < len(sc.data) {
		switch sc.data[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// value checks the value at sc.i against n (nil: anything) and moves past
// it.
func (sc *scanner) value(n *fastNode, depth int) bool {
	if depth > maxFastDepth || sc.i >= len(sc.data) {
		return false
	}
	if n != nil && len(n.also) > 0 {
		start := sc.i
		for _, a := range n.also {
			sc.i = start
			if !sc.value(a, depth+1) {
				return false
			}
		}
		sc.i = start
	}
	if n != nil && n.never {
		return false
	}
	switch c := sc.data[sc.i]; {
	case c == '{':
		return sc.object(n, depth)
	case c == '[':
		return sc.array(n, depth)
	case c == '"':
		return sc.str(n)
	case c == 't':
		return sc.literal("true") && n.allows(tBool)
	case c == 'f':
		return sc.literal("false") && n.allows(tBool)
	case c == 'n':
		return sc.literal("null") && n.allows(tNull)
	case c == '-' || c >= '0' && c <= '9':
		return sc.number(n)
	}
	return false
}

func (n *fastNode) allows(t uint8) bool { return n == nil || n.types == 0 || n.types&t != 0 }

func (sc *scanner) literal(lit string) bool {
	if len(sc.data)-sc.i < len(lit) || string(sc.data[sc.i:sc.i+len(lit)]) != lit {
		return false
	}
	sc.i += len(lit)
	return true
}

func (sc *scanner) object(n *fastNode, depth int) bool {
	if !n.allows(tObject) {
		return false
	}
	sc.i++ // '{'
	var seen uint64
	count := 0
	sc.ws()
	if sc.i < len(sc.data) && sc.data[sc.i] == '}' {
		sc.i++
		return n == nil || (n.required == 0)
	}
	for {
		sc.ws()
		start := sc.i
		escaped, ok := sc.skipString()
		if !ok {
			return false
		}
		var child *fastNode
		if n != nil && (n.props != nil || n.addl != nil || n.addlForbid) {
			if escaped {
				return false
			}
			key := sc.data[start+1 : sc.i-1]
			if p, named := n.prop(key); named {
				child = p.node
				if p.req >= 0 {
					seen |= 1 << p.req
				}
			} else if n.addlForbid {
				return false
			} else {
				child = n.addl
			}
		}
		count++
		sc.ws()
		if sc.i >= len(sc.data) || sc.data[sc.i] != ':' {
			return false
		}
		sc.i++
		sc.ws()
		if !sc.value(child, depth+1) {
			return false
		}
		sc.ws()
		if sc.i >= len(sc.data) {
			return false
		}
		switch sc.data[sc.i] {
		case ',':
			sc.i++
			continue
		case '}':
			sc.i++
		default:
			return false
		}
		break
	}
	if n == nil {
		return true
	}
	return seen == (uint64(1)<<n.required)-1 && (n.maxProps < 0 || count <= n.maxProps)
}

func (sc *scanner) array(n *fastNode, depth int) bool {
	if !n.allows(tArray) {
		return false
	}
	sc.i++ // '['
	var items *fastNode
	if n != nil {
		items = n.items
	}
	count := 0
	sc.ws()
	if sc.i < len(sc.data) && sc.data[sc.i] == ']' {
		sc.i++
	} else {
		for {
			sc.ws()
			if !sc.value(items, depth+1) {
				return false
			}
			count++
			sc.ws()
			if sc.i >= len(sc.data) {
				return false
			}
			if sc.data[sc.i] == ',' {
				sc.i++
				continue
			}
			if sc.data[sc.i] != ']' {
				return false
			}
			sc.i++
			break
		}
	}
	return n == nil || ((n.minItems < 0 || count >= n.minItems) && (n.maxItems < 0 || count <= n.maxItems))
}

// skipString moves past the string at sc.i, checking its syntax, and
// reports whether it has escapes (or bytes outside ASCII, which only
// matters to a caller that checks the string's contents).
func (sc *scanner) skipString() (escaped, ok bool) {
	escaped, _, ok = sc.skipStringASCII()
	return escaped, ok
}

// skipStringASCII is skipString that also reports whether the string's
// bytes are all ASCII.
func (sc *scanner) skipStringASCII() (escaped, ascii, ok bool) {
	if sc.i >= len(sc.data) || sc.data[sc.i] != '"' {
		return false, false, false
	}
	var high byte
	for i := sc.i + 1; i < len(sc.data); i++ {
		switch c := sc.data[i]; {
		case c == '"':
			sc.i = i + 1
			return escaped, high < 0x80, true
		case c < 0x20:
			return false, false, false
		case c >= 0x80:
			high = c
		case c == '\\':
			escaped = true
			i++
			if i >= len(sc.data) {
				return false, false, false
			}
			switch sc.data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(sc.data) {
					return false, false, false
				}
				for _, h := range sc.data[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false, false, false
					}
				}
				i += 4
			default:
				return false, false, false
			}
		}
	}
	return false, false, false
}

func (sc *scanner) str(n *fastNode) bool {
	start := sc.i
	escaped, ascii, ok := sc.skipStringASCII()
	if !ok || !n.allows(tString) {
		return false
	}
	if n == nil || !n.hasStringRules() {
		return true
	}
	if escaped {
		return false // decoding would change it: let the full validator judge
	}
	s := sc.data[start+1 : sc.i-1]
	return n.stringOK(unsafe.String(unsafe.SliceData(s), len(s)), ascii)
}

// stringOK checks the contents of a string (its decoded text) against n's
// string rules. ascii says s is known to be all ASCII.
func (n *fastNode) stringOK(s string, ascii bool) bool {
	if !ascii && !utf8.ValidString(s) {
		return false // the validator sees U+FFFD there: let it judge
	}
	if n.minLen >= 0 || n.maxLen >= 0 {
		l := len(s)
		if !ascii {
			l = utf8.RuneCountInString(s)
		}
		if n.minLen >= 0 && l < n.minLen || n.maxLen >= 0 && l > n.maxLen {
			return false
		}
	}
	if n.pattern != nil && !n.pattern.MatchString(s) {
		return false
	}
	if n.enum != nil && !slices.Contains(n.enum, s) {
		return false
	}
	return n.format == nil || n.format(s)
}

// number checks a number against n's type and integer bounds.
func (sc *scanner) number(n *fastNode) bool {
	end := numberEnd(sc.data, sc.i)
	if end < 0 {
		return false
	}
	text := sc.data[sc.i:end]
	sc.i = end
	return n.numberOK(text)
}

// numberOK checks text, a number by the JSON grammar, against n's type and
// integer bounds. Numbers with an exponent, or too long for an int64, are
// left to the full validator when n constrains them.
func (n *fastNode) numberOK(d []byte) bool {
	if n == nil {
		return true
	}
	if !n.allows(tNumber | tInteger) {
		return false
	}
	bounded := n.min != nil || n.max != nil || n.exMin != nil || n.exMax != nil
	intOnly := n.types != 0 && n.types&tNumber == 0
	if !bounded && !intOnly {
		return true
	}
	i := 0
	neg := d[0] == '-'
	if neg {
		i++
	}
	intStart := i
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	intDigits := d[intStart:i]
	fracNonZero := false
	if i < len(d) && d[i] == '.' {
		for i++; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
			fracNonZero = fracNonZero || d[i] != '0'
		}
	}
	if i < len(d) || len(intDigits) > 18 {
		return false // an exponent, or a big number
	}
	if intOnly && fracNonZero {
		return false
	}
	var whole int64
	for _, c := range intDigits {
		whole = whole*10 + int64(c-'0')
	}
	return n.boundsOK(neg, whole, fracNonZero)
}

// boundsOK checks the number ±(whole + frac), with 0 <= frac < 1 and
// fracNonZero saying whether frac > 0, against n's integer bounds.
func (n *fastNode) boundsOK(neg bool, whole int64, fracNonZero bool) bool {
	// cmp compares the number with b: -1, 0 or +1.
	cmp := func(b int64) int {
		if !neg {
			switch {
			case whole < b:
				return -1
			case whole > b || fracNonZero:
				return 1
			}
			return 0
		}
		if b == math.MinInt64 {
			return 1 // |number| < 10^18
		}
		// -(whole+frac) vs b  ⇔  reversed (whole+frac) vs -b.
		switch {
		case whole < -b:
			return 1
		case whole > -b || fracNonZero:
			return -1
		}
		return 0
	}
	return (n.min == nil || cmp(*n.min) >= 0) && (n.max == nil || cmp(*n.max) <= 0) &&
		(n.exMin == nil || cmp(*n.exMin) > 0) && (n.exMax == nil || cmp(*n.exMax) < 0)
}

package schema

import (
	"math"
	"regexp"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/strata-go/strata/internal/rawjson"
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

// fastValid reports whether data is certainly one JSON document valid
// against n. False means "not known": ask the full validator.
func (n *fastNode) fastValid(data []byte) bool {
	sc := scanner{rawjson.Scanner{Data: data}}
	sc.Space()
	if !sc.value(n, 0) {
		return false
	}
	sc.Space()
	return sc.I == len(data)
}

// scanner walks JSON bytes, checking them against fast path nodes.
type scanner struct{ rawjson.Scanner }

// value checks the value at sc.I against n (nil: anything) and moves past
// it.
func (sc *scanner) value(n *fastNode, depth int) bool {
	if depth > maxFastDepth || sc.I >= len(sc.Data) {
		return false
	}
	if n != nil && len(n.also) > 0 {
		start := sc.I
		for _, a := range n.also {
			sc.I = start
			if !sc.value(a, depth+1) {
				return false
			}
		}
		sc.I = start
	}
	if n != nil && n.never {
		return false
	}
	switch c := sc.Data[sc.I]; {
	case c == '{':
		return sc.object(n, depth)
	case c == '[':
		return sc.array(n, depth)
	case c == '"':
		return sc.str(n)
	case c == 't':
		return sc.Literal("true") && n.allows(tBool)
	case c == 'f':
		return sc.Literal("false") && n.allows(tBool)
	case c == 'n':
		return sc.Literal("null") && n.allows(tNull)
	case c == '-' || c >= '0' && c <= '9':
		return sc.number(n)
	}
	return false
}

func (n *fastNode) allows(t uint8) bool { return n == nil || n.types == 0 || n.types&t != 0 }

func (sc *scanner) object(n *fastNode, depth int) bool {
	if !n.allows(tObject) {
		return false
	}
	sc.I++ // '{'
	var seen uint64
	count := 0
	sc.Space()
	if sc.I < len(sc.Data) && sc.Data[sc.I] == '}' {
		sc.I++
		return n == nil || (n.required == 0)
	}
	for {
		sc.Space()
		start := sc.I
		escaped, _, ok := sc.String()
		if !ok {
			return false
		}
		var child *fastNode
		if n != nil && (n.props != nil || n.addl != nil || n.addlForbid) {
			if escaped {
				return false
			}
			key := sc.Data[start+1 : sc.I-1]
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
		sc.Space()
		if sc.I >= len(sc.Data) || sc.Data[sc.I] != ':' {
			return false
		}
		sc.I++
		sc.Space()
		if !sc.value(child, depth+1) {
			return false
		}
		sc.Space()
		if sc.I >= len(sc.Data) {
			return false
		}
		switch sc.Data[sc.I] {
		case ',':
			sc.I++
			continue
		case '}':
			sc.I++
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
	sc.I++ // '['
	var items *fastNode
	if n != nil {
		items = n.items
	}
	count := 0
	sc.Space()
	if sc.I < len(sc.Data) && sc.Data[sc.I] == ']' {
		sc.I++
	} else {
		for {
			sc.Space()
			if !sc.value(items, depth+1) {
				return false
			}
			count++
			sc.Space()
			if sc.I >= len(sc.Data) {
				return false
			}
			if sc.Data[sc.I] == ',' {
				sc.I++
				continue
			}
			if sc.Data[sc.I] != ']' {
				return false
			}
			sc.I++
			break
		}
	}
	return n == nil || ((n.minItems < 0 || count >= n.minItems) && (n.maxItems < 0 || count <= n.maxItems))
}

func (sc *scanner) str(n *fastNode) bool {
	start := sc.I
	escaped, ascii, ok := sc.String()
	if !ok || !n.allows(tString) {
		return false
	}
	if n == nil || !n.hasStringRules() {
		return true
	}
	if escaped {
		return false // decoding would change it: let the full validator judge
	}
	s := sc.Data[start+1 : sc.I-1]
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
	start := sc.I
	return sc.Number() && n.numberOK(sc.Data[start:sc.I])
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

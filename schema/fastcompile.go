package schema

import (
	"encoding/json"
	"math"
	"math/big"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// Compiling a schema document into the fast path's fastNode tree (see fast.go).

// compileFast returns the fast path of doc, a schema document as
// decodeJSON parses it, or nil when doc uses a keyword outside the
// supported set. It reads the document itself, never the validator's
// compiled form, so that the validator stays replaceable; the full
// validator has already accepted doc.
func compileFast(doc any) *fastNode {
	c := fastCompiler{root: doc, refs: map[string]*fastNode{}}
	n, ok := c.node(doc, true)
	if !ok {
		return nil
	}
	return n
}

// fastCompiler compiles one schema document.
type fastCompiler struct {
	root any
	refs map[string]*fastNode // by JSON Pointer, for $ref (and its cycles)
}

// fastKeywords are the keywords the fast path checks, and the annotations
// it may ignore; any other keyword leaves the schema to the validator.
var fastKeywords = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true, "maxProperties": true,
	"items": true, "minItems": true, "maxItems": true, "minLength": true, "maxLength": true, "pattern": true,
	"format": true, "enum": true, "minimum": true, "maximum": true, "exclusiveMinimum": true,
	"exclusiveMaximum": true, "$ref": true, "allOf": true,
	"title": true, "description": true, "$comment": true, "default": true, "examples": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$defs": true, "definitions": true,
}

var fastTypes = map[string]uint8{"null": tNull, "boolean": tBool, "integer": tInteger,
	"number": tNumber | tInteger, "string": tString, "array": tArray, "object": tObject}

func (c *fastCompiler) node(doc any, root bool) (*fastNode, bool) {
	n := &fastNode{maxProps: -1, minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}
	return n, c.fill(n, doc, root)
}

// fill compiles doc into n.
func (c *fastCompiler) fill(n *fastNode, doc any, root bool) bool {
	var s map[string]any
	switch d := doc.(type) {
	case bool:
		n.never = !d
		return true
	case map[string]any:
		s = d
	default:
		return false
	}
	for k := range s {
		if !fastKeywords[k] && !(root && (k == "$schema" || k == "$id")) {
			return false
		}
	}
	ok := true
	for k, v := range s {
		switch k {
		case "type":
			ok = c.types(n, v)
		case "maxProperties":
			n.maxProps, ok = count(v)
		case "minItems":
			n.minItems, ok = count(v)
		case "maxItems":
			n.maxItems, ok = count(v)
		case "minLength":
			n.minLen, ok = count(v)
		case "maxLength":
			n.maxLen, ok = count(v)
		case "pattern":
			p, _ := v.(string)
			n.pattern, ok = compilePattern(p)
		case "format":
			ok = c.format(n, v)
		case "enum":
			ok = c.enum(n, v)
		case "minimum":
			n.min, ok = bound(v)
		case "maximum":
			n.max, ok = bound(v)
		case "exclusiveMinimum":
			n.exMin, ok = bound(v)
		case "exclusiveMaximum":
			n.exMax, ok = bound(v)
		case "additionalProperties":
			if b, isBool := v.(bool); isBool {
				n.addlForbid = !b
			} else {
				n.addl, ok = c.node(v, false)
			}
		case "items":
			n.items, ok = c.node(v, false) // an array of schemas (2019-09 tuples) is refused
		case "allOf":
			subs, _ := v.([]any)
			for _, sub := range subs {
				var a *fastNode
				if a, ok = c.node(sub, false); !ok {
					break
				}
				n.also = append(n.also, a)
			}
		case "$ref":
			var a *fastNode
			if a, ok = c.ref(v); ok {
				n.also = append(n.also, a)
			}
		}
		if !ok {
			return false
		}
	}
	return c.properties(n, s["properties"], s["required"])
}

func (c *fastCompiler) types(n *fastNode, v any) bool {
	names, isList := v.([]any)
	if !isList {
		names = []any{v}
	}
	for _, t := range names {
		name, _ := t.(string)
		bit := fastTypes[name]
		if bit == 0 {
			return false
		}
		n.types |= bit
	}
	return true
}

// format uses the fast checks of fastFormats, else the validator's own
// (the registry asserts formats and adds none).
func (c *fastCompiler) format(n *fastNode, v any) bool {
	name, _ := v.(string)
	if n.format = fastFormats[name]; n.format == nil {
		f := jsonschema.Formats[name]
		if f == nil {
			return false
		}
		n.format = func(s string) bool { return f(s) }
	}
	return true
}

func (c *fastCompiler) enum(n *fastNode, v any) bool {
	values, _ := v.([]any)
	n.enum = []string{}
	for _, e := range values {
		str, ok := e.(string)
		if !ok {
			return false // only all-string enums
		}
		n.enum = append(n.enum, str)
	}
	return true
}

func (c *fastCompiler) properties(n *fastNode, props, required any) bool {
	pm, _ := props.(map[string]any)
	req, _ := required.([]any)
	if len(pm) == 0 && len(req) == 0 {
		return true
	}
	if len(req) > 64 {
		return false
	}
	n.props = make(map[string]fastProp, len(pm)+len(req))
	for name, sub := range pm {
		p := fastProp{req: -1}
		var ok bool
		if p.node, ok = c.node(sub, false); !ok {
			return false
		}
		n.props[name] = p
	}
	for _, r := range req {
		name, ok := r.(string)
		if !ok {
			return false
		}
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
	return true
}

// ref compiles the target of a $ref: a JSON Pointer into this document
// ("#", "#/$defs/name", …). Any other reference leaves the schema to the
// validator.
func (c *fastCompiler) ref(v any) (*fastNode, bool) {
	r, _ := v.(string)
	frag, ok := strings.CutPrefix(r, "#")
	if !ok {
		return nil, false
	}
	ptr, err := url.PathUnescape(frag)
	if err != nil || ptr != "" && ptr[0] != '/' {
		return nil, false
	}
	if n := c.refs[ptr]; n != nil {
		return n, true
	}
	target := c.root
	if ptr != "" {
		for _, tok := range strings.Split(ptr[1:], "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch t := target.(type) {
			case map[string]any:
				target, ok = t[tok]
			case []any:
				i, err := strconv.Atoi(tok)
				ok = err == nil && i >= 0 && i < len(t)
				if ok {
					target = t[i]
				}
			default:
				ok = false
			}
			if !ok {
				return nil, false
			}
		}
	}
	n := &fastNode{maxProps: -1, minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}
	c.refs[ptr] = n // before compiling, for recursive schemas
	return n, c.fill(n, target, ptr == "")
}

// count reads a non-negative integer keyword.
func count(v any) (int, bool) {
	b, ok := bound(v)
	if !ok || *b < 0 || *b > math.MaxInt32 {
		return 0, false
	}
	return int(*b), true
}

// bound reads a numeric keyword that is an integer in int64's range; the
// fast path checks no other bounds.
func bound(v any) (*int64, bool) {
	num, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(string(num))
	if !ok || !r.IsInt() || !r.Num().IsInt64() {
		return nil, false
	}
	i := r.Num().Int64()
	return &i, true
}

// compilePattern compiles a pattern as the validator does (Go's regexp).
func compilePattern(p string) (*regexp.Regexp, bool) {
	re, err := regexp.Compile(p)
	return re, err == nil
}

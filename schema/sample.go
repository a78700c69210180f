package schema

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// SampleJSON adds data, a payload of version version of the named event,
// as a sample that Check brings up to the current version with the
// upcasters and validates there. data must be valid against that
// version's schema. Without samples for a version, Check generates its
// own from the version's schema (see Check); add samples when the
// upcaster depends on values a generated document lacks (a date it
// parses, an enum it maps).
func (r *Registry) SampleJSON(name string, version int, data []byte) error {
	if err := checkName(name, version); err != nil {
		return fmt.Errorf("schema: sample: %w", err)
	}
	return r.update(func(s *state) error {
		t := s.edit(name, false)
		if t == nil {
			return fmt.Errorf("schema: sample %q v%d: %w: register it first", name, version, ErrUnknownType)
		}
		v := t.versions[version]
		if v == nil {
			return &ValidationError{EventType: name, Version: version, Err: ErrUnknownVersion}
		}
		if err := v.check(name, data); err != nil {
			return fmt.Errorf("schema: sample %q v%d: %w", name, version, err)
		}
		m := maps.Clone(t.versionSamples)
		if m == nil {
			m = map[int][][]byte{}
		}
		m[version] = append(slices.Clone(m[version]), slices.Clone(data))
		t.versionSamples = m
		return nil
	})
}

// upcastSamples checks the chain of upcasters from version n of t to the
// current version on samples: those added with SampleJSON or, without
// any, documents generated from version n's schema. Each must upcast
// without error, validate against the current schema and decode into the
// Go type. t has a Go type and an upcaster for every step.
func (t *eventType) upcastSamples(n int) []error {
	samples := t.versionSamples[n]
	generated := len(samples) == 0
	if generated {
		samples = t.versions[n].generate()
		if len(samples) == 0 {
			return []error{fmt.Errorf("schema: %q v%d: Check cannot generate a valid sample from its schema to test its upcasters: add one with Registry.SampleJSON", t.name, n)}
		}
	}
	var errs []error
	for _, data := range samples {
		what := "sample " + string(data)
		if generated {
			what = "generated sample " + string(data)
		}
		doc, err := parseDoc(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: %q v%d: %s: %w", t.name, n, what, err))
			continue
		}
		m, ok := doc.(map[string]any)
		if !ok {
			continue // Decode refuses such a payload before any upcaster runs
		}
		var failed error
		for i := n; i < t.current && failed == nil; i++ {
			if m, err = runUpcast(t.upcasts[i], m); err != nil {
				failed = fmt.Errorf("upcast v%d to v%d: %w", i, i+1, err)
			}
		}
		var out []byte
		if failed == nil {
			if out, err = printDoc(m); err != nil {
				failed = fmt.Errorf("encode upcast v%d: %w", t.current, err)
			}
		}
		if failed == nil {
			if err := t.versions[t.current].check(t.name, out); err != nil {
				failed = fmt.Errorf("upcast to v%d gives %s, not valid against v%d: %w", t.current, out, t.current, err)
			}
		}
		if failed == nil {
			if err := unmarshal(out, reflect.New(t.goType).Interface()); err != nil {
				failed = fmt.Errorf("upcast to v%d gives %s, which does not decode into %s: %w", t.current, out, t.goType, err)
			}
		}
		if failed != nil {
			errs = append(errs, fmt.Errorf("schema: %q v%d does not upcast: %s: %w", t.name, n, what, failed))
		}
	}
	return errs
}

// generate returns up to two payloads valid against v made from its
// schema alone: one with the required properties only and one with every
// declared property (the same document once when they agree). A schema
// the generator cannot satisfy (a pattern, oneOf's exclusivity, not)
// gives fewer or none.
func (v *vschema) generate() [][]byte {
	var out [][]byte
	for _, all := range []bool{false, true} {
		doc, ok := sampleOf(v.schema, all, 0)
		if !ok {
			continue
		}
		data, err := marshal(doc)
		if err != nil || v.check("", data) != nil {
			continue
		}
		if len(out) == 0 || string(out[0]) != string(data) {
			out = append(out, data)
		}
	}
	return out
}

// maxSampleDepth bounds the nesting of a generated sample (recursive
// schemas through $ref).
const maxSampleDepth = 16

// sampleOf makes a value that s may accept: the first of its const or
// enum, or a value of its first type built to its bounds; objects get
// their required properties (every declared one when all is set).
func sampleOf(s *jsonschema.Schema, all bool, depth int) (any, bool) {
	if s == nil {
		return "sample", true
	}
	if depth > maxSampleDepth {
		return nil, false
	}
	switch {
	case s.Always != nil:
		return "sample", *s.Always
	case len(s.Constant) > 0:
		return s.Constant[0], true
	case len(s.Enum) > 0:
		return s.Enum[0], true
	case s.Ref != nil && len(s.Types) == 0 && len(s.Properties) == 0:
		return sampleOf(s.Ref, all, depth+1)
	}
	if len(s.Types) == 0 && len(s.Properties) == 0 && len(s.Required) == 0 {
		for _, alt := range [][]*jsonschema.Schema{s.AnyOf, s.OneOf} {
			if len(alt) > 0 {
				return sampleOf(alt[0], all, depth+1)
			}
		}
		if len(s.AllOf) > 0 {
			merged := map[string]any{}
			for _, part := range s.AllOf {
				v, ok := sampleOf(part, all, depth+1)
				m, isMap := v.(map[string]any)
				if !ok || !isMap {
					return v, ok && len(s.AllOf) == 1
				}
				maps.Copy(merged, m)
			}
			return merged, true
		}
	}
	switch typeOf(s) {
	case "object":
		m := map[string]any{}
		for _, k := range slices.Sorted(maps.Keys(s.Properties)) {
			if all || slices.Contains(s.Required, k) {
				v, ok := sampleOf(s.Properties[k], all, depth+1)
				if !ok {
					return nil, false
				}
				m[k] = v
			}
		}
		for _, k := range s.Required {
			if _, ok := m[k]; !ok {
				m[k] = "sample"
			}
		}
		return m, true
	case "array":
		var item *jsonschema.Schema
		switch it := s.Items.(type) {
		case *jsonschema.Schema:
			item = it
		}
		if s.Items2020 != nil {
			item = s.Items2020
		}
		n := max(s.MinItems, 0)
		if all && n == 0 && s.MaxItems != 0 {
			n = 1
		}
		arr := make([]any, 0, n)
		for i := range n {
			is := item
			if i < len(s.PrefixItems) {
				is = s.PrefixItems[i]
			}
			v, ok := sampleOf(is, all, depth+1)
			if !ok {
				return nil, false
			}
			arr = append(arr, v)
		}
		return arr, true
	case "string":
		return sampleString(s), true
	case "integer":
		return sampleNumber(s, big.NewRat(1, 1), true)
	case "number":
		// A fraction where the schema allows one: an upcaster that copies
		// it into an integer field of the next version is caught.
		return sampleNumber(s, big.NewRat(3, 2), false)
	case "boolean":
		return true, true
	}
	return nil, true
}

// typeOf picks the type of value to generate for s.
func typeOf(s *jsonschema.Schema) string {
	for _, t := range []string{"object", "string", "integer", "number", "boolean", "array", "null"} {
		if slices.Contains(s.Types, t) {
			return t
		}
	}
	switch {
	case len(s.Types) > 0:
		return s.Types[0]
	case len(s.Properties) > 0 || len(s.Required) > 0:
		return "object"
	case s.Items != nil || s.Items2020 != nil || len(s.PrefixItems) > 0:
		return "array"
	case s.Minimum != nil || s.Maximum != nil || s.ExclusiveMinimum != nil || s.ExclusiveMaximum != nil || s.MultipleOf != nil:
		return "number"
	}
	return "string"
}

// sampleFormats are valid values of the formats Strata's schemas assert.
var sampleFormats = map[string]string{
	"date-time":     "2024-01-02T03:04:05Z",
	"date":          "2024-01-02",
	"time":          "03:04:05Z",
	"duration":      "P1D",
	"email":         "sample@example.com",
	"idn-email":     "sample@example.com",
	"hostname":      "example.com",
	"idn-hostname":  "example.com",
	"ipv4":          "192.0.2.1",
	"ipv6":          "2001:db8::1",
	"uri":           "https://example.com/sample",
	"uri-reference": "https://example.com/sample",
	"iri":           "https://example.com/sample",
	"uuid":          "0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d9e",
	"regex":         "^sample$",
}

func sampleString(s *jsonschema.Schema) string {
	v, ok := sampleFormats[s.Format]
	if !ok {
		v = "sample"
	}
	if n := s.MinLength; n > 0 && len([]rune(v)) < n {
		v += strings.Repeat("x", n-len([]rune(v)))
	}
	if n := s.MaxLength; n >= 0 && len([]rune(v)) > n {
		v = string([]rune(v)[:n])
	}
	return v
}

// sampleNumber returns want moved into s's bounds (and onto its
// multipleOf), as a JSON number; integer rounds up to a whole number.
func sampleNumber(s *jsonschema.Schema, want *big.Rat, integer bool) (any, bool) {
	v := new(big.Rat).Set(want)
	if s.Minimum != nil && v.Cmp(s.Minimum) < 0 {
		v.Set(s.Minimum)
	}
	if s.ExclusiveMinimum != nil && v.Cmp(s.ExclusiveMinimum) <= 0 {
		v.Add(s.ExclusiveMinimum, big.NewRat(1, 2))
	}
	if s.Maximum != nil && v.Cmp(s.Maximum) > 0 {
		v.Set(s.Maximum)
	}
	if s.ExclusiveMaximum != nil && v.Cmp(s.ExclusiveMaximum) >= 0 {
		v.Sub(s.ExclusiveMaximum, big.NewRat(1, 2))
	}
	if s.MultipleOf != nil && s.MultipleOf.Sign() > 0 {
		q := new(big.Rat).Quo(v, s.MultipleOf)
		k := ceil(q)
		v.Mul(new(big.Rat).SetInt(k), s.MultipleOf)
	}
	if integer || !v.IsInt() && s.MultipleOf != nil {
		v.SetInt(ceil(v))
	}
	if v.IsInt() {
		return json.Number(v.Num().String()), true
	}
	return json.Number(strings.TrimRight(v.FloatString(6), "0")), true
}

func ceil(r *big.Rat) *big.Int {
	q, m := new(big.Int).DivMod(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

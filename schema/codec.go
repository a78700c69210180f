package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"

	gojson "github.com/goccy/go-json"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/strata-go/strata/eventstore"
)

// Validate checks ev against the JSON Schema of its type and version (a
// zero SchemaVersion means 1, as in the store). It returns a
// *ValidationError for an unknown type, an unknown version or an invalid
// payload; errors.Is(err, eventstore.ErrInvalidEvent) is true for each.
// Validate is what makes *Registry an eventstore.Validator.
func (r *Registry) Validate(ev eventstore.NewEvent) error {
	t := r.load().byName[ev.Type]
	if t == nil {
		return &ValidationError{EventType: ev.Type, Version: ev.SchemaVersion, Err: ErrUnknownType}
	}
	n := ev.SchemaVersion
	if n == 0 {
		n = 1
	}
	v := t.versions[n]
	if v == nil {
		return &ValidationError{EventType: ev.Type, Version: n, Err: ErrUnknownVersion}
	}
	return v.check(t.name, ev.Data)
}

// Encode turns v, a value of a registered Go type or a pointer to one,
// into an event of its type's current version, validated against that
// version's schema. The payload is encoding/json's, except that '<', '>'
// and '&' are kept as written (encoding/json's Marshal escapes them for
// HTML, storing "->" as "-\u003e"). An unregistered type returns an error matching
// ErrUnknownType; an invalid payload a *ValidationError.
func (r *Registry) Encode(v any) (eventstore.NewEvent, error) {
	rt := reflect.TypeOf(v)
	if rt == nil {
		return eventstore.NewEvent{}, fmt.Errorf("schema: encode nil: %w", ErrUnknownType)
	}
	if rt.Kind() == reflect.Pointer {
		if reflect.ValueOf(v).IsNil() {
			return eventstore.NewEvent{}, fmt.Errorf("schema: encode nil %s", rt)
		}
		rt = rt.Elem()
	}
	t := r.load().byGo[rt]
	if t == nil {
		return eventstore.NewEvent{}, fmt.Errorf("schema: encode %s: %w: register it with schema.Register", rt, ErrUnknownType)
	}
	data, err := marshal(v)
	if err != nil {
		return eventstore.NewEvent{}, fmt.Errorf("schema: encode %q: %w", t.name, err)
	}
	if err := t.versions[t.current].check(t.name, data); err != nil {
		return eventstore.NewEvent{}, err
	}
	return eventstore.NewEvent{Type: t.name, SchemaVersion: t.current, Data: data}, nil
}

// Decode returns the payload of e as a value (not a pointer) of the Go
// type registered for e's type. An event of an older version is first
// brought to the current version by the upcasters, one version at a time,
// and the result validated against the current schema. An event already in
// the current version is not validated again: the store validated it when
// it was appended (CheckEvents validates every event).
//
// Errors: a *ValidationError for an unknown type or version or for a
// payload that is not valid JSON or fails the current schema after
// upcasting; an error matching ErrNoUpcast when an upcaster is missing;
// the upcaster's error, wrapped, when one fails.
func (r *Registry) Decode(e eventstore.Event) (any, error) {
	t, data, err := r.load().currentJSON(e, false)
	if err != nil {
		return nil, err
	}
	p := reflect.New(t.goType)
	if err := unmarshal(data, p.Interface()); err != nil {
		return nil, fmt.Errorf("schema: decode %q v%d into %s: %w", t.name, e.SchemaVersion, t.goType, err)
	}
	return p.Elem().Interface(), nil
}

// DecodeAs is Decode for callers that know which type to expect: it
// returns an error, not a value of another type, when e's registered Go
// type is not T. T may also be an interface type the event's Go type
// implements, such as any.
func DecodeAs[T any](reg *Registry, e eventstore.Event) (T, error) {
	var out T
	rt := reflect.TypeFor[T]()
	if rt.Kind() == reflect.Interface {
		v, err := reg.Decode(e)
		if err != nil {
			return out, err
		}
		out, ok := v.(T)
		if !ok {
			return out, fmt.Errorf("schema: decode %q: %T does not implement %s", e.Type, v, rt)
		}
		return out, nil
	}
	t, data, err := reg.load().currentJSON(e, false)
	if err != nil {
		return out, err
	}
	if t.goType != rt {
		return out, fmt.Errorf("schema: decode %q: the event's Go type is %s, not %s", e.Type, t.goType, rt)
	}
	if err := unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("schema: decode %q v%d into %s: %w", t.name, e.SchemaVersion, rt, err)
	}
	return out, nil
}

// currentJSON returns e's type and e's payload in the current version:
// e.Data itself when e is current, or the upcast document, printed and
// validated against the current schema. strict also validates e.Data
// against its own version's schema, and a current event against the
// current schema.
func (s *state) currentJSON(e eventstore.Event, strict bool) (*eventType, []byte, error) {
	t := s.byName[e.Type]
	if t == nil {
		return nil, nil, &ValidationError{EventType: e.Type, Version: e.SchemaVersion, Err: ErrUnknownType}
	}
	if t.goType == nil {
		return nil, nil, fmt.Errorf("schema: decode %q: %w: its schemas are registered but no Go type is (use schema.Register)", e.Type, ErrUnknownType)
	}
	n := e.SchemaVersion
	if n == 0 {
		n = 1
	}
	v := t.versions[n]
	if v == nil || n > t.current {
		return nil, nil, &ValidationError{EventType: e.Type, Version: n, Err: ErrUnknownVersion}
	}
	if n == t.current {
		if strict {
			if err := v.check(t.name, e.Data); err != nil {
				if err = t.erasedOK(v, e.Data, err); err != nil {
					return nil, nil, err
				}
			}
		}
		return t, e.Data, nil
	}
	for i := n; i < t.current; i++ {
		if t.upcasts[i] == nil {
			return nil, nil, fmt.Errorf("schema: decode %q v%d: %w: no upcaster from v%d to v%d", e.Type, n, ErrNoUpcast, i, i+1)
		}
	}
	if strict {
		if err := v.check(t.name, e.Data); err != nil {
			if err = t.erasedOK(v, e.Data, err); err != nil {
				return nil, nil, err
			}
		}
	}
	doc, err := parseDoc(e.Data)
	if err != nil {
		return nil, nil, invalidJSON(t.name, n, err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, nil, &ValidationError{EventType: t.name, Version: n,
			Failures: []Failure{{Reason: "is a JSON " + jsonKind(doc) + ", upcasters need an object"}}}
	}
	for i := n; i < t.current; i++ {
		var err error
		if m, err = runUpcast(t.upcasts[i], m); err != nil {
			return nil, nil, fmt.Errorf("schema: decode %q: upcast v%d to v%d: %w", t.name, i, i+1, err)
		}
	}
	data, err := printDoc(m)
	if err != nil {
		return nil, nil, fmt.Errorf("schema: decode %q: encode upcast v%d: %w", t.name, t.current, err)
	}
	if err := t.versions[t.current].check(t.name, data); err != nil {
		if err = t.erasedOK(t.versions[t.current], data, err); err != nil {
			return nil, nil, err
		}
	}
	return t, data, nil
}

// runUpcast calls fn, turning a panic into an error.
func runUpcast(fn UpcastFunc, doc map[string]any) (out map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("upcaster panicked: %v", p)
		}
	}()
	out, err = fn(doc)
	if err == nil && out == nil {
		err = errors.New("upcaster returned a nil document")
	}
	return out, err
}

// check validates data: by the fast path when it can vouch for it
// (without allocating), otherwise by parsing data and running the full
// validator, which explains any failure.
func (v *vschema) check(name string, data []byte) error {
	if v.fast != nil && v.fast.fastValid(data) {
		return nil
	}
	var doc any
	if err := decodeJSON(data, &doc); err != nil {
		return invalidJSON(name, v.n, err)
	}
	return v.validateValue(name, doc)
}

// validateValue validates a parsed document.
func (v *vschema) validateValue(name string, doc any) error {
	err := v.schema.Validate(doc)
	if err == nil {
		return nil
	}
	verr := &ValidationError{EventType: name, Version: v.n}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		verr.Failures = failures(ve, nil)
		// The validator walks properties in map order: sort, so that the
		// same payload always gets the same message.
		slices.SortStableFunc(verr.Failures, func(a, b Failure) int { return strings.Compare(a.Pointer, b.Pointer) })
	}
	if len(verr.Failures) == 0 {
		verr.Failures = []Failure{{Reason: err.Error()}}
	}
	return verr
}

// failures lists the leaves of a jsonschema error tree: the failures that
// say what is wrong, each once.
func failures(ve *jsonschema.ValidationError, out []Failure) []Failure {
	if len(ve.Causes) == 0 {
		f := Failure{Pointer: ve.InstanceLocation, Reason: ve.Message}
		for _, g := range out {
			if g == f {
				return out
			}
		}
		return append(out, f)
	}
	for _, c := range ve.Causes {
		out = failures(c, out)
	}
	return out
}

func invalidJSON(name string, n int, err error) *ValidationError {
	return &ValidationError{EventType: name, Version: n, Failures: []Failure{{Reason: "not valid JSON: " + err.Error()}}}
}

// jsonKind names the JSON type of a parsed value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

// marshal encodes v as encoding/json's Marshal does, without its HTML
// escaping of '<', '>' and '&' (and U+2028, U+2029, which stay escaped
// as JavaScript needs): an event payload is data, not a web page.
func marshal(v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer func() {
		if e.buf.Cap() <= 64<<10 { // a huge payload's buffer is not kept
			encoders.Put(e)
		}
	}()
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	// One allocation, as json.Marshal's copy out of its pooled buffer.
	return bytes.Clone(bytes.TrimSuffix(e.buf.Bytes(), []byte("\n"))), nil
}

// encoder is a json.Encoder without HTML escaping and the buffer it
// writes to, pooled.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// unmarshal decodes a payload in the current version into the value v
// points to, as json.Unmarshal does (FuzzFill holds it to that), with
// go-json, which is faster at it.
func unmarshal(data []byte, v any) error { return gojson.Unmarshal(data, v) }

// printDoc prints an upcast document as encoding/json's Marshal does
// (FuzzDocCodec holds it to that), with go-json, which is faster at it.
func printDoc(doc any) ([]byte, error) { return gojson.Marshal(doc) }

// parseDoc parses the one JSON document in data as decodeJSON does
// (FuzzDocCodec holds it to that), with go-json, which is faster at it; a
// malformed document gets encoding/json's description of what is wrong.
func parseDoc(data []byte) (any, error) {
	d := gojson.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	if err == nil && !onlySpace(data[d.InputOffset():]) {
		err = errors.New("data after the JSON document")
	}
	if err != nil {
		var std any
		if stdErr := decodeJSON(data, &std); stdErr != nil {
			return nil, stdErr
		}
		return nil, err
	}
	return v, nil
}

// onlySpace reports whether b is JSON white space only.
func onlySpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// decodeJSON parses one JSON document into v, with numbers as json.Number
// as the validator expects, and refuses trailing data.
func decodeJSON(data []byte, v *any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON document")
	}
	return nil
}

package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/strata-go/strata/eventstore"
)

// maxVersion bounds schema version numbers, so that a typo such as
// "v20240101.json" is reported instead of accepted.
const maxVersion = 1 << 20

// Registry maps event type names and versions to JSON Schemas, Go types
// and upcasters. Make one with NewRegistry and fill it at start-up;
// registration may run concurrently with use, but is meant to be done once.
// A Registry is safe for concurrent use: lookups take no lock.
//
// *Registry is an eventstore.Validator.
type Registry struct {
	mu sync.Mutex // serialises writers; readers load st without it
	st atomic.Pointer[state]
}

var _ eventstore.Validator = (*Registry)(nil)

// UpcastFunc turns the payload of one version of an event into the payload
// of the next version. doc is a fresh map the function may modify and
// return; numbers in it are json.Number, so that no precision is lost.
// Values it adds may be any of the types encoding/json produces when
// decoding into an interface (string, bool, nil, json.Number, float64,
// map[string]any, []any) or Go integers.
type UpcastFunc func(doc map[string]any) (map[string]any, error)

// state is an immutable snapshot of the registry. Writers copy it, change
// the copy and publish it; readers never lock.
type state struct {
	byName map[string]*eventType
	byGo   map[reflect.Type]*eventType
}

// eventType is everything known about one event name. It is never changed
// once published in a state.
type eventType struct {
	name     string
	goType   reflect.Type // nil until Register binds one
	current  int          // version bound to goType; 0 when none
	versions map[int]*vschema
	upcasts  map[int]UpcastFunc // keyed by the version they upcast from
	samples  []any
	// versionSamples are the payloads registered with SampleJSON, by
	// version: Check upcasts them instead of generated ones.
	versionSamples map[int][][]byte
	// tags is the personal data declared by goType's struct tags.
	tags Personal
}

// vschema is one compiled JSON Schema.
type vschema struct {
	n      int
	raw    json.RawMessage
	source string // file it was loaded from; "" when passed as bytes
	schema *jsonschema.Schema
	fast   *fastNode // nil when the schema uses keywords the fast path lacks
	// personal is what the schema's annotations declare personal.
	personal Personal
	// props are the JSON pointers of the properties it declares.
	props map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{}
	r.st.Store(&state{byName: map[string]*eventType{}, byGo: map[reflect.Type]*eventType{}})
	return r
}

// load returns the current state.
func (r *Registry) load() *state {
	if s := r.st.Load(); s != nil {
		return s
	}
	return &state{} // a zero Registry is empty
}

// update runs fn on a copy of the state and publishes the copy when fn
// succeeds. Nothing changes when it fails.
func (r *Registry) update(fn func(s *state) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.load()
	s := &state{byName: make(map[string]*eventType, len(old.byName)+1), byGo: make(map[reflect.Type]*eventType, len(old.byGo)+1)}
	for k, v := range old.byName {
		s.byName[k] = v
	}
	for k, v := range old.byGo {
		s.byGo[k] = v
	}
	if err := fn(s); err != nil {
		return err
	}
	r.st.Store(s)
	return nil
}

// edit returns a private copy of the named type in s, creating it when
// create is true, and puts the copy in s. It returns nil for an unknown name
// when create is false.
func (s *state) edit(name string, create bool) *eventType {
	old := s.byName[name]
	if old == nil && !create {
		return nil
	}
	t := &eventType{name: name, versions: map[int]*vschema{}, upcasts: map[int]UpcastFunc{}}
	if old != nil {
		t.goType, t.current, t.samples, t.tags = old.goType, old.current, slices.Clone(old.samples), old.tags
		t.versionSamples = maps.Clone(old.versionSamples)
		for k, v := range old.versions {
			t.versions[k] = v
		}
		for k, v := range old.upcasts {
			t.upcasts[k] = v
		}
	}
	s.byName[name] = t
	if t.goType != nil {
		s.byGo[t.goType] = t
	}
	return t
}

// newest returns the highest registered version of t, or 0.
func (t *eventType) newest() int {
	n := 0
	for v := range t.versions {
		n = max(n, v)
	}
	return n
}

// Register binds the Go type T to the event name and makes version its
// current version: Encode writes T values as that version and Decode
// returns T values. T must not be a pointer or interface type; Encode and
// Decode accept a T or a *T.
//
// jsonSchema is the JSON Schema document of that version. Pass nil to use
// the schema already registered for name and version, for example by
// LoadFS. The version must be the newest registered for name; older
// versions are registered with RegisterVersion and brought up to date by
// upcasters (see Upcast).
//
// An event name has at most one Go type and a Go type at most one name.
func Register[T any](reg *Registry, name string, version int, jsonSchema []byte) error {
	rt := reflect.TypeFor[T]()
	if err := checkName(name, version); err != nil {
		return fmt.Errorf("schema: register %s: %w", rt, err)
	}
	if k := rt.Kind(); k == reflect.Pointer || k == reflect.Interface {
		return fmt.Errorf("schema: register %s as %q: want a non-pointer, non-interface type", rt, name)
	}
	tags, err := personalTags(rt)
	if err != nil {
		return fmt.Errorf("schema: register %s as %q: %w", rt, name, err)
	}
	var compiled *vschema
	if jsonSchema != nil {
		if compiled, err = compile(name, version, jsonSchema, ""); err != nil {
			return fmt.Errorf("schema: register %q v%d: %w", name, version, err)
		}
	}
	return reg.update(func(s *state) error {
		if other := s.byGo[rt]; other != nil {
			return fmt.Errorf("schema: register %q: Go type %s is already registered as %q", name, rt, other.name)
		}
		if old := s.byName[name]; old != nil && old.goType != nil {
			return fmt.Errorf("schema: register %q as %s: the name is already bound to Go type %s", name, rt, old.goType)
		}
		t := s.edit(name, true)
		existing := t.versions[version]
		switch {
		case compiled == nil && existing == nil:
			return fmt.Errorf("schema: register %q v%d: no schema given and none loaded for that version", name, version)
		case compiled != nil && existing != nil:
			return fmt.Errorf("schema: register %q v%d: a schema is already registered for that version%s; pass a nil schema to use it",
				name, version, from(existing.source))
		case compiled != nil:
			t.versions[version] = compiled
		}
		if n := t.newest(); n > version {
			return fmt.Errorf("schema: register %q v%d: version %d is registered too; the current version must be the newest", name, version, n)
		}
		for v := range t.upcasts {
			if v >= version {
				return fmt.Errorf("schema: register %q v%d: an upcaster from v%d exists; upcasters must end at the current version", name, version, v)
			}
		}
		if sub := t.versions[version].personal.Subject; sub != "" && tags.Subject != "" && sub != tags.Subject {
			return fmt.Errorf("schema: register %q v%d as %s: the schema names the subject %s, the struct tag %s", name, version, rt, sub, tags.Subject)
		}
		if p := t.versions[version].personal; (len(tags.Fields) > 0 || len(p.Fields) > 0) && tags.Subject == "" && p.Subject == "" {
			return fmt.Errorf("schema: register %q as %s: personal fields but no subject: mark the field naming it %q in the schema or tag it %s:\"subject\"",
				name, rt, SubjectKeyword, structTag)
		}
		t.goType, t.current, t.tags = rt, version, tags
		if err := t.checkPersonalKept(); err != nil {
			return fmt.Errorf("schema: register %q v%d as %s: %w", name, version, rt, err)
		}
		s.byGo[rt] = t
		return nil
	})
}

// RegisterVersion registers the JSON Schema of an older version of an
// event, one that events written before the current version follow. Such
// events are validated against it and upcast on read; see Upcast.
func (r *Registry) RegisterVersion(name string, version int, jsonSchema []byte) error {
	if err := checkName(name, version); err != nil {
		return fmt.Errorf("schema: register version: %w", err)
	}
	if jsonSchema == nil {
		return fmt.Errorf("schema: register %q v%d: no schema", name, version)
	}
	v, err := compile(name, version, jsonSchema, "")
	if err != nil {
		return fmt.Errorf("schema: register %q v%d: %w", name, version, err)
	}
	if len(v.personal.Fields) > 0 && v.personal.Subject == "" {
		return fmt.Errorf("schema: register %q v%d: personal fields %v but no property marked %q", name, version, v.personal.Fields, SubjectKeyword)
	}
	return r.update(func(s *state) error { return addVersion(s, name, v) })
}

// addVersion adds an older version to s.
func addVersion(s *state, name string, v *vschema) error {
	t := s.edit(name, true)
	if old := t.versions[v.n]; old != nil {
		return fmt.Errorf("schema: register %q v%d%s: version already registered%s", name, v.n, from(v.source), from(old.source))
	}
	if t.current != 0 && v.n > t.current {
		return fmt.Errorf("schema: register %q v%d%s: newer than the current version %d bound to %s; register it with Register",
			name, v.n, from(v.source), t.current, t.goType)
	}
	t.versions[v.n] = v
	if err := t.checkPersonalKept(); err != nil {
		return fmt.Errorf("schema: register %q v%d%s: %w", name, v.n, from(v.source), err)
	}
	return nil
}

// Upcast registers fn to turn payloads of version fromVersion of the named
// event into payloads of version fromVersion+1. Decode runs the upcasters
// from an event's version up to the current version in order, so each
// upcaster only knows two adjacent versions. A panic in fn is reported as
// an error, not propagated.
func (r *Registry) Upcast(name string, fromVersion int, fn UpcastFunc) error {
	if err := checkName(name, fromVersion); err != nil {
		return fmt.Errorf("schema: upcast: %w", err)
	}
	if fn == nil {
		return fmt.Errorf("schema: upcast %q v%d: nil function", name, fromVersion)
	}
	return r.update(func(s *state) error {
		t := s.edit(name, false)
		if t == nil {
			return fmt.Errorf("schema: upcast %q v%d: %w: register a version of it first", name, fromVersion, ErrUnknownType)
		}
		if t.upcasts[fromVersion] != nil {
			return fmt.Errorf("schema: upcast %q v%d: an upcaster from that version is already registered", name, fromVersion)
		}
		if t.current != 0 && fromVersion >= t.current {
			return fmt.Errorf("schema: upcast %q v%d: v%d is the current version; upcasters go from older versions to it", name, fromVersion, t.current)
		}
		t.upcasts[fromVersion] = fn
		return nil
	})
}

// Sample adds v, a value of a registered Go type (or a pointer to one), as
// an example Check round-trips instead of the type's zero value. Use it for
// types whose zero value is not valid against their schema, such as those
// with required fields.
func (r *Registry) Sample(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return fmt.Errorf("schema: sample: nil %s", rv.Type())
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return errors.New("schema: sample: nil value")
	}
	return r.update(func(s *state) error {
		t := s.byGo[rv.Type()]
		if t == nil {
			return fmt.Errorf("schema: sample %s: %w: register it first", rv.Type(), ErrUnknownType)
		}
		t = s.edit(t.name, false)
		t.samples = append(t.samples, rv.Interface())
		return nil
	})
}

// LoadFS registers the JSON Schema of every version of every event found in
// fsys, laid out as <EventName>/v<N>.json (for example OrderPlaced/v2.json).
// Files whose names do not end in ".json" are ignored; a ".json" file
// elsewhere or named otherwise is an error. Use fs.Sub to load a
// subdirectory of an embed.FS.
//
// LoadFS registers schemas only: bind the current version of each event to
// its Go type afterwards with Register and a nil schema. Every problem is
// reported, each naming its file, and nothing is registered unless all
// files load.
func (r *Registry) LoadFS(fsys fs.FS) error {
	var (
		loaded []*vschema
		names  []string
		errs   []error
	)
	walkErr := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: load %s: %w", p, err))
			if d != nil && d.IsDir() && p != "." {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		name, n, ok := parseSchemaPath(p)
		if !ok {
			errs = append(errs, fmt.Errorf("schema: load %s: want a path of the form <EventName>/v<N>.json", p))
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: load %s: %w", p, err))
			return nil
		}
		v, err := compile(name, n, data, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: load %s: %w", p, err))
			return nil
		}
		loaded = append(loaded, v)
		names = append(names, name)
		return nil
	})
	if walkErr != nil {
		errs = append(errs, fmt.Errorf("schema: load: %w", walkErr))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return r.update(func(s *state) error {
		for i, v := range loaded {
			if err := addVersion(s, names[i], v); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// parseSchemaPath splits "OrderPlaced/v2.json" into its name and version.
func parseSchemaPath(p string) (name string, n int, ok bool) {
	name, file, ok := strings.Cut(p, "/")
	if !ok || name == "" || strings.Contains(file, "/") {
		return "", 0, false
	}
	digits, ok := strings.CutPrefix(strings.TrimSuffix(file, ".json"), "v")
	if !ok || digits == "" || digits[0] == '0' {
		return "", 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || checkName(name, n) != nil {
		return "", 0, false
	}
	return name, n, true
}

// checkName checks an event name and version number: the name must be one
// the store accepts as an event type.
func checkName(name string, version int) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty event name", ErrInvalidName)
	case len(name) > eventstore.MaxTypeLength || !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: event %q: want at most %d bytes of UTF-8 without NUL", ErrInvalidName, name, eventstore.MaxTypeLength)
	case version < 1 || version > maxVersion:
		return fmt.Errorf("%w: event %q: version %d: want 1 to %d", ErrInvalidName, name, version, maxVersion)
	}
	return nil
}

// from formats a schema's source file for an error message.
func from(source string) string {
	if source == "" {
		return ""
	}
	return " (" + source + ")"
}

// Drafts the registry accepts in "$schema". Without "$schema", 2020-12 is
// used.
var drafts = map[string]bool{
	"https://json-schema.org/draft/2020-12/schema": true,
	"https://json-schema.org/draft/2019-09/schema": true,
}

// compile checks that raw is a JSON Schema of a supported draft and
// compiles it. External references are refused: every schema must be self
// contained.
func compile(name string, n int, raw []byte, source string) (*vschema, error) {
	var doc any
	if err := decodeJSON(raw, &doc); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	switch d := doc.(type) {
	case bool:
	case map[string]any:
		if s, ok := d["$schema"]; ok {
			str, _ := s.(string)
			u := strings.TrimSuffix(strings.Replace(str, "http://", "https://", 1), "#")
			if !drafts[u] {
				return nil, fmt.Errorf("$schema %q: want draft 2020-12 or 2019-09", s)
			}
		}
	default:
		return nil, errors.New("a JSON Schema must be an object or a boolean")
	}
	loc := "strata:///" + url.PathEscape(name) + "/v" + strconv.Itoa(n) + ".json"
	if source != "" {
		loc = "strata:///" + (&url.URL{Path: path.Clean(source)}).EscapedPath()
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	c.AssertFormat = true
	c.LoadURL = func(s string) (io.ReadCloser, error) {
		return nil, fmt.Errorf("cannot load %s: schemas must not reference other documents", s)
	}
	if err := c.AddResource(loc, bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	sch, err := c.Compile(loc)
	if err != nil {
		// A schema that breaks its meta-schema: list where and why, as for
		// an invalid event, instead of the meta-schema's keyword path.
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			var b strings.Builder
			for i, f := range failures(ve, nil) {
				if i > 0 {
					b.WriteString("; ")
				}
				b.WriteString(f.String())
			}
			return nil, fmt.Errorf("not a valid JSON Schema: %s", b.String())
		}
		return nil, err
	}
	personal, err := personalOf(doc)
	if err != nil {
		return nil, err
	}
	return &vschema{n: n, raw: slices.Clone(raw), source: source, schema: sch, fast: compileFast(doc), personal: personal, props: properties(doc)}, nil
}

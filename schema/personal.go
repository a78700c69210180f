package schema

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// The annotations that declare an event's personal data in its JSON
// Schema, on a property's subschema. Validators ignore them (they are not
// keywords); the registry reads them when it compiles a schema.
const (
	// PersonalKeyword marks a property as personal data ("x-strata-personal":
	// true): its value is stored encrypted under the key of the event's data
	// subject and reads back erased once the subject is forgotten (package
	// shred). Properties of nested objects may be marked too.
	PersonalKeyword = "x-strata-personal"
	// SubjectKeyword marks the property that names the event's data subject
	// ("x-strata-subject": true), a string such as a customer ID. It is
	// stored in clear: it is how the key is found.
	SubjectKeyword = "x-strata-subject"
)

// The struct tag that declares the same on a Go type bound by Register:
// `strata:"personal"` on a field whose value is personal data,
// `strata:"subject"` on the (string) field naming the subject. Only the
// type's own (top-level) fields are read; nested personal data is declared
// in the JSON Schema.
const structTag = "strata"

// Erased is the value a personal string field reads back as once its data
// subject is forgotten; a personal field of any other JSON type reads back
// as null (its Go field keeps its zero value). Check for it with IsErased.
const Erased = "[erased]"

// IsErased reports whether s is the erased value of a personal string
// field.
func IsErased(s string) bool { return s == Erased }

// Personal describes the personal data of one version of an event type.
type Personal struct {
	// Subject is the JSON pointer of the field naming the data subject,
	// as in "/customer"; "" when none is declared.
	Subject string
	// Fields are the JSON pointers of the personal fields, sorted.
	Fields []string
}

// Personal returns what the registry knows of the personal data of the
// named event's version (0 means 1), from its JSON Schema's annotations
// and, for the current version, its Go type's struct tags. ok is false
// when the event has no personal field.
func (r *Registry) Personal(name string, version int) (p Personal, ok bool) {
	t := r.load().byName[name]
	if t == nil {
		return Personal{}, false
	}
	if version == 0 {
		version = 1
	}
	v := t.versions[version]
	if v == nil {
		return Personal{}, false
	}
	p = v.personal
	if version == t.current && t.tags.Subject != "" {
		p.Subject = t.tags.Subject
	}
	if version == t.current && len(t.tags.Fields) > 0 {
		p.Fields = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(p.Fields), t.tags.Fields...))))
	}
	return p, len(p.Fields) > 0
}

// personalOf reads the annotations of a parsed JSON Schema: the
// properties marked personal or subject, nested objects' included.
func personalOf(doc any) (Personal, error) {
	var p Personal
	seen := map[string]bool{} // the schema locations of the annotations read
	var walk func(node any, at, loc string) error
	walk = func(node any, at, loc string) error {
		m, _ := node.(map[string]any)
		props, _ := m["properties"].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(props)) {
			sub, _ := props[name].(map[string]any)
			ptr := at + "/" + escapePointer(name)
			subLoc := loc + "/properties/" + escapePointer(name)
			seen[subLoc] = true
			if sub[PersonalKeyword] == true {
				p.Fields = append(p.Fields, ptr)
			}
			if sub[SubjectKeyword] == true {
				if p.Subject != "" {
					return fmt.Errorf("%s: two properties are marked %s (%s and %s)", SubjectKeyword, SubjectKeyword, p.Subject, ptr)
				}
				if sub[PersonalKeyword] == true {
					return fmt.Errorf("%s: the subject's property cannot be personal too: it names the key", ptr)
				}
				p.Subject = ptr
			}
			if sub[PersonalKeyword] != true {
				if err := walk(sub, ptr, subLoc); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(doc, "", ""); err != nil {
		return Personal{}, err
	}
	return p, outOfReach(doc, "", seen)
}

// outOfReach refuses the annotations that personalOf does not read (seen
// holds the schema locations it did): one in an array's items, a
// combinator, a definition or additionalProperties names no field of the
// event that the sealer could find, so its value would be stored in clear.
// An annotation's value must be a boolean. Annotations inside a personal
// property are covered by it.
func outOfReach(node any, loc string, seen map[string]bool) error {
	switch n := node.(type) {
	case map[string]any:
		for _, kw := range []string{PersonalKeyword, SubjectKeyword} {
			v, ok := n[kw]
			if !ok || schemaMaps[loc[strings.LastIndexByte(loc, '/')+1:]] {
				continue // n maps names to schemas: kw names a property
			}
			if _, isBool := v.(bool); !isBool {
				return fmt.Errorf("%s at %q: want true or false, not %v", kw, loc, v)
			}
			if v == true && !seen[loc] {
				return fmt.Errorf("%s at %q: only properties (of nested objects too) can be marked; "+
					"mark the array or object holding it personal instead", kw, loc)
			}
		}
		if n[PersonalKeyword] == true {
			return nil
		}
		for _, k := range slices.Sorted(maps.Keys(n)) {
			if err := outOfReach(n[k], loc+"/"+escapePointer(k), seen); err != nil {
				return err
			}
		}
	case []any:
		for i, v := range n {
			if err := outOfReach(v, loc+"/"+strconv.Itoa(i), seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// properties returns the JSON pointers of the properties a parsed JSON
// Schema declares, nested objects' included.
func properties(doc any) map[string]bool {
	out := map[string]bool{}
	var walk func(node any, at string)
	walk = func(node any, at string) {
		m, _ := node.(map[string]any)
		props, _ := m["properties"].(map[string]any)
		for name, sub := range props {
			ptr := at + "/" + escapePointer(name)
			out[ptr] = true
			walk(sub, ptr)
		}
	}
	walk(doc, "")
	return out
}

// checkPersonalKept refuses a current version that declares, not
// personal, a property that an older version marks personal (in its
// schema, or as a top-level field of the Go type): its new events would
// store the value in clear, and an older event's erased value, upcast
// into it, would fail its validation. A property dropped, or renamed, is
// the upcaster's to carry.
func (t *eventType) checkPersonalKept() error {
	cur := t.versions[t.current]
	if t.current == 0 || cur == nil {
		return nil
	}
	declared := maps.Clone(cur.props)
	if t.goType != nil && t.goType.Kind() == reflect.Struct {
		for f := range t.goType.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			if f.IsExported() && name != "-" {
				declared["/"+escapePointer(name)] = true
			}
		}
	}
	p := cur.personal
	p.Fields = append(slices.Clone(p.Fields), t.tags.Fields...)
	for _, n := range slices.Sorted(maps.Keys(t.versions)) {
		for _, f := range t.versions[n].personal.Fields {
			if n != t.current && declared[f] && !slices.Contains(p.Fields, f) {
				return fmt.Errorf("%s is personal in v%d but not in the current v%d: mark it %s there too",
					f, n, t.current, PersonalKeyword)
			}
		}
	}
	return nil
}

// personalTags reads the strata struct tags of a Go type's fields.
func personalTags(rt reflect.Type) (Personal, error) {
	var p Personal
	if rt.Kind() != reflect.Struct {
		return p, nil
	}
	for f := range rt.Fields() {
		tag := f.Tag.Get(structTag)
		if tag == "" || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return p, fmt.Errorf("field %s is tagged %s:%q but not encoded (json:\"-\")", f.Name, structTag, tag)
		}
		if name == "" {
			name = f.Name
		}
		ptr := "/" + escapePointer(name)
		switch tag {
		case "personal":
			p.Fields = append(p.Fields, ptr)
		case "subject":
			if f.Type.Kind() != reflect.String {
				return p, fmt.Errorf("field %s is tagged %s:\"subject\" but is a %s, not a string", f.Name, structTag, f.Type)
			}
			if p.Subject != "" {
				return p, fmt.Errorf("two fields are tagged %s:\"subject\" (%s and %s)", structTag, p.Subject, ptr)
			}
			p.Subject = ptr
		default:
			return p, fmt.Errorf("field %s: unknown tag %s:%q (want personal or subject)", f.Name, structTag, tag)
		}
	}
	slices.Sort(p.Fields)
	for f := range rt.Fields() {
		if err := nestedTags(f.Type, f.Name, map[reflect.Type]bool{rt: true}); err != nil {
			return p, err
		}
	}
	return p, nil
}

// nestedTags refuses strata tags below a type's own fields (in an
// embedded struct, a struct field, a slice's or map's elements): the
// sealer reads only the top level's, so such a field would be stored in
// clear. Nested personal data is declared in the JSON Schema.
func nestedTags(t reflect.Type, at string, seen map[reflect.Type]bool) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return nil
	}
	seen[t] = true
	for f := range t.Fields() {
		if tag := f.Tag.Get(structTag); tag != "" {
			return fmt.Errorf("field %s.%s is tagged %s:%q below the type's own fields, where it is not read: "+
				"declare nested personal data in the JSON Schema", at, f.Name, structTag, tag)
		}
		if err := nestedTags(f.Type, at+"."+f.Name, seen); err != nil {
			return err
		}
	}
	return nil
}

// schemaMaps are the keywords whose value maps names to schemas.
var schemaMaps = map[string]bool{"properties": true, "patternProperties": true, "$defs": true, "definitions": true, "dependentSchemas": true}

// escapePointer escapes a property name as a JSON pointer token.
func escapePointer(s string) string { return pointerEscaper.Replace(s) }

var (
	pointerEscaper   = strings.NewReplacer("~", "~0", "/", "~1")
	pointerUnescaper = strings.NewReplacer("~1", "/", "~0", "~")
)

// erasedOK drops from err, a validation of data against v, the failures
// at personal fields that hold their erased value (Erased or null): a
// forgotten subject's event still decodes, upcast or not. It returns nil
// when no failure is left, and err itself when it is not a
// *ValidationError.
func (t *eventType) erasedOK(v *vschema, data []byte, err error) error {
	verr, ok := err.(*ValidationError)
	if !ok || len(verr.Failures) == 0 {
		return err
	}
	p := v.personal
	if v.n == t.current {
		p.Fields = append(slices.Clone(p.Fields), t.tags.Fields...)
	}
	if len(p.Fields) == 0 {
		return err
	}
	doc, perr := parseDoc(data)
	if perr != nil {
		return err
	}
	var left []Failure
	for _, f := range verr.Failures {
		if !erasedAt(doc, p.Fields, f.Pointer) {
			left = append(left, f)
		}
	}
	if len(left) == 0 {
		return nil
	}
	out := *verr
	out.Failures = left
	return &out
}

// erasedAt reports whether the failure at ptr is in a personal field
// whose value in doc is erased.
func erasedAt(doc any, fields []string, ptr string) bool {
	for _, f := range fields {
		if ptr != f && !strings.HasPrefix(ptr, f+"/") {
			// A failure reported at the parent (a required property
			// missing, say) is not the erased field's.
			continue
		}
		v, ok := lookup(doc, f)
		if ok && (v == nil || v == Erased) {
			return true
		}
	}
	return false
}

// lookup returns the value at a JSON pointer of doc.
func lookup(doc any, ptr string) (any, bool) {
	for _, tok := range strings.Split(ptr, "/")[1:] {
		tok = pointerUnescaper.Replace(tok)
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return doc, true
}

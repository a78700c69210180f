package schema

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/strata-go/strata/internal/rawjson"
)

// A document that went through upcasters is already parsed; printing it
// only for json.Unmarshal to parse it again costs more than everything
// else Decode does. fill sets a Go value from the parsed document the way
// json.Unmarshal would set it from the printed one, for the types and
// values it knows; for anything else — and whenever json.Unmarshal would
// fail — it reports false, and the caller unmarshals the printed document,
// which also gives encoding/json's error. FuzzFill holds it to
// json.Unmarshal.

// fill decodes doc into dst (addressable, holding its zero value).
func fill(dst reflect.Value, doc any) bool {
	return fillerFor(dst.Type())(dst, doc)
}

// filler sets dst from v, reporting false when it cannot do exactly what
// json.Unmarshal would. It may have changed dst when it returns false.
type filler func(dst reflect.Value, v any) bool

var fillers sync.Map // reflect.Type → filler

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func fillerFor(t reflect.Type) filler {
	if f, ok := fillers.Load(t); ok {
		return f.(filler)
	}
	// A recursive type refers to itself while its filler is built, and
	// another goroutine may ask for it meanwhile: both get a placeholder
	// that runs the finished filler once it is built.
	var final filler
	built := make(chan struct{})
	placeholder := filler(func(dst reflect.Value, v any) bool {
		<-built
		return final(dst, v)
	})
	if f, loaded := fillers.LoadOrStore(t, placeholder); loaded {
		return f.(filler)
	}
	final = buildFiller(t)
	close(built)
	fillers.Store(t, final)
	return final
}

func unsupported(reflect.Value, any) bool { return false }

func buildFiller(t reflect.Type) filler {
	if t == reflect.TypeFor[json.Number]() {
		return unsupported // encoding/json checks what goes into one
	}
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface {
		// As json.Unmarshal, use the methods of the field's address.
		if reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
			return fillUnmarshaler
		}
		if reflect.PointerTo(t).Implements(textUnmarshalerType) {
			return fillTextUnmarshaler
		}
	}
	switch t.Kind() {
	case reflect.String:
		return func(dst reflect.Value, v any) bool {
			switch v := v.(type) {
			case string:
				if !utf8.ValidString(v) {
					return false // printed with U+FFFD: let encoding/json have it
				}
				dst.SetString(v)
				return true
			case nil:
				return true
			}
			return false
		}
	case reflect.Bool:
		return func(dst reflect.Value, v any) bool {
			switch v := v.(type) {
			case bool:
				dst.SetBool(v)
				return true
			case nil:
				return true
			}
			return false
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return numberFiller(func(dst reflect.Value, s string) bool {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || dst.OverflowInt(n) {
				return false
			}
			dst.SetInt(n)
			return true
		})
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return numberFiller(func(dst reflect.Value, s string) bool {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil || dst.OverflowUint(n) {
				return false
			}
			dst.SetUint(n)
			return true
		})
	case reflect.Float32, reflect.Float64:
		bits := t.Bits()
		return numberFiller(func(dst reflect.Value, s string) bool {
			f, err := strconv.ParseFloat(s, bits)
			if err != nil || dst.OverflowFloat(f) {
				return false
			}
			dst.SetFloat(f)
			return true
		})
	case reflect.Pointer:
		elem := t.Elem()
		ef := fillerFor(elem)
		return func(dst reflect.Value, v any) bool {
			if v == nil {
				dst.SetZero()
				return true
			}
			p := reflect.New(elem)
			if !ef(p.Elem(), v) {
				return false
			}
			dst.Set(p)
			return true
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return unsupported // base64 strings
		}
		f := fillerFor(t.Elem())
		return func(dst reflect.Value, v any) bool {
			switch v := v.(type) {
			case nil:
				dst.SetZero()
				return true
			case []any:
				s := reflect.MakeSlice(t, len(v), len(v))
				for i, e := range v {
					if !f(s.Index(i), e) {
						return false
					}
				}
				dst.Set(s)
				return true
			}
			return false
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String || t.Key() != reflect.TypeFor[string]() {
			return unsupported
		}
		elem := t.Elem()
		f := fillerFor(elem)
		return func(dst reflect.Value, v any) bool {
			switch v := v.(type) {
			case nil:
				dst.SetZero()
				return true
			case map[string]any:
				m := reflect.MakeMapWithSize(t, len(v))
				for k, e := range v {
					if !utf8.ValidString(k) {
						return false
					}
					ev := reflect.New(elem).Elem()
					if !f(ev, e) {
						return false
					}
					m.SetMapIndex(reflect.ValueOf(k), ev)
				}
				dst.Set(m)
				return true
			}
			return false
		}
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return unsupported
		}
		return func(dst reflect.Value, v any) bool {
			out, ok := plainValue(v)
			if !ok {
				return false
			}
			if out == nil {
				dst.SetZero()
			} else {
				dst.Set(reflect.ValueOf(out))
			}
			return true
		}
	case reflect.Struct:
		return structFiller(t)
	}
	return unsupported
}

// numberFiller fills a number field: set parses the number's JSON text
// (see numberText) as encoding/json would; null leaves the field alone.
func numberFiller(set func(dst reflect.Value, text string) bool) filler {
	return func(dst reflect.Value, v any) bool {
		if v == nil {
			return true
		}
		var buf [32]byte
		s, ok := numberText(buf[:0], v)
		return ok && set(dst, s)
	}
}

// numberText returns the JSON text of a number in a document: a
// json.Number's own, or a Go number as appendDoc prints it (which is what
// json.Unmarshal would parse).
func numberText(buf []byte, v any) (string, bool) {
	switch v := v.(type) {
	case json.Number:
		return string(v), v != "" && rawjson.IsNumber([]byte(v))
	case int, int64, int32, uint64, float64:
		b, err := appendDoc(buf, v)
		return string(b), err == nil
	}
	return "", false
}

// plainValue turns a document value into what json.Unmarshal gives an
// interface: float64 for numbers.
func plainValue(v any) (any, bool) {
	switch v := v.(type) {
	case string:
		return v, utf8.ValidString(v)
	case nil, bool:
		return v, true
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		return f, err == nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			var ok bool
			if out[i], ok = plainValue(e); !ok {
				return nil, false
			}
		}
		return out, true
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if !utf8.ValidString(k) {
				return nil, false
			}
			pv, ok := plainValue(e)
			if !ok {
				return nil, false
			}
			out[k] = pv
		}
		return out, true
	}
	return nil, false // a Go value an upcaster added: let encoding/json print and parse it
}

// fillUnmarshaler gives a json.Unmarshaler its value printed, as
// json.Unmarshal gives it the value's bytes (null included).
func fillUnmarshaler(dst reflect.Value, v any) bool {
	b, err := appendDoc(nil, v)
	if err != nil {
		return false
	}
	return dst.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b) == nil
}

// fillTextUnmarshaler gives an encoding.TextUnmarshaler a JSON string's
// text, as json.Unmarshal does; null leaves it alone.
func fillTextUnmarshaler(dst reflect.Value, v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return utf8.ValidString(v) && dst.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(v)) == nil
	}
	return false
}

// structField is a field json.Unmarshal sets.
type structField struct {
	name  string
	index int
	fill  filler
}

// structFiller handles structs without embedded fields or ",string"
// options (others are left to encoding/json).
func structFiller(t reflect.Type) filler {
	var fields []structField
	byName := map[string]int{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			return unsupported
		}
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",string,") {
			return unsupported
		}
		if name == "" || !validTagName(name) {
			name = sf.Name
		}
		if _, dup := byName[name]; dup {
			return unsupported // encoding/json's rules for clashing names
		}
		byName[name] = len(fields)
		fields = append(fields, structField{name: name, index: i, fill: fillerFor(sf.Type)})
	}
	return func(dst reflect.Value, v any) bool {
		m, ok := v.(map[string]any)
		if !ok {
			return v == nil
		}
		var set [64]bool
		if len(fields) > len(set) {
			return false
		}
		for k, e := range m {
			if !utf8.ValidString(k) {
				return false
			}
			j, ok := byName[k]
			if !ok {
				// encoding/json also takes a key that matches a field's
				// name but for case.
				j = -1
				for n := range fields {
					if strings.EqualFold(fields[n].name, k) {
						j = n
						break
					}
				}
				if j < 0 {
					continue // unknown keys are ignored
				}
			}
			if set[j] {
				return false // two keys for one field: their order decides, and a map has none
			}
			set[j] = true
			f := &fields[j]
			if !f.fill(dst.Field(f.index), e) {
				return false
			}
		}
		return true
	}
}

// validTagName reports whether encoding/json accepts name as a field's
// JSON name.
func validTagName(s string) bool {
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

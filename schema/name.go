package schema

import (
	"fmt"
	"reflect"
)

// NameOf returns the event name the Go type T is registered under (by
// Register), or an error matching ErrUnknownType. T may be a pointer to
// the registered type.
func NameOf[T any](reg *Registry) (string, error) {
	rt := reflect.TypeFor[T]()
	if rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	t := reg.load().byGo[rt]
	if t == nil {
		return "", fmt.Errorf("schema: %s: %w: register it with schema.Register", rt, ErrUnknownType)
	}
	return t.name, nil
}

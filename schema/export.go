package schema

import (
	"encoding/json"
	"maps"
	"slices"
)

// exported is the document MarshalJSON writes.
type exported struct {
	Types []exportedType `json:"types"`
}

type exportedType struct {
	Name           string            `json:"name"`
	GoType         string            `json:"goType,omitempty"`
	CurrentVersion int               `json:"currentVersion,omitempty"`
	Versions       []exportedVersion `json:"versions"`
}

type exportedVersion struct {
	Version      int             `json:"version"`
	Source       string          `json:"source,omitempty"`
	UpcastToNext bool            `json:"upcastToNext,omitempty"`
	Schema       json.RawMessage `json:"schema"`
}

// MarshalJSON exports the registry as one JSON document, for
// documentation, review of schema changes or other tools:
//
//	{"types": [{"name": "OrderPlaced", "goType": "example.com/shop.OrderPlaced",
//	  "currentVersion": 2, "versions": [
//	    {"version": 1, "source": "OrderPlaced/v1.json", "upcastToNext": true, "schema": {…}},
//	    {"version": 2, "source": "OrderPlaced/v2.json", "schema": {…}}]}]}
//
// Types are sorted by name and versions in ascending order. goType and
// currentVersion are left out for names without a Go type, source for
// schemas not loaded from a file.
func (r *Registry) MarshalJSON() ([]byte, error) {
	s := r.load()
	doc := exported{Types: []exportedType{}}
	for _, name := range slices.Sorted(maps.Keys(s.byName)) {
		t := s.byName[name]
		et := exportedType{Name: name, CurrentVersion: t.current}
		if t.goType != nil {
			et.GoType = t.goType.String()
			if p := t.goType.PkgPath(); p != "" {
				et.GoType = p + "." + t.goType.Name()
			}
		}
		for _, n := range slices.Sorted(maps.Keys(t.versions)) {
			v := t.versions[n]
			et.Versions = append(et.Versions, exportedVersion{Version: n, Source: v.source, UpcastToNext: t.upcasts[n] != nil, Schema: v.raw})
		}
		doc.Types = append(doc.Types, et)
	}
	return json.Marshal(doc)
}

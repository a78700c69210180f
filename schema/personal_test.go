package schema_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

type tagged struct {
	Customer string `json:"customer" strata:"subject"`
	Email    string `json:"email,omitempty" strata:"personal"`
	Plan     string `json:"plan"`
}

type badSubject struct {
	ID int `json:"id" strata:"subject"`
}

type badTag struct {
	Email string `json:"email" strata:"secret"`
}

type twoSubjects struct {
	A string `json:"a" strata:"subject"`
	B string `json:"b" strata:"subject"`
}

type personalNoSubject struct {
	Email string `json:"email" strata:"personal"`
}

// Personal data is declared by struct tags and schema annotations
// (nested ones included), merged for the current version; mistakes in
// the declarations are registration errors.
func TestPersonalDeclarations(t *testing.T) {
	reg := schema.NewRegistry()
	v1 := `{"type":"object","properties":{"who":{"type":"string","x-strata-subject":true},"mail":{"type":"string","x-strata-personal":true}}}`
	v2 := `{"type":"object","properties":{"customer":{"type":"string"},"plan":{"type":"string"},
		"address":{"type":"object","properties":{"street":{"x-strata-personal":true},"a/b":{"x-strata-personal":true}}}}}`
	if err := reg.RegisterVersion("Tagged", 1, []byte(v1)); err != nil {
		t.Fatal(err)
	}
	if err := schema.Register[tagged](reg, "Tagged", 2, []byte(v2)); err != nil {
		t.Fatal(err)
	}
	p, ok := reg.Personal("Tagged", 2)
	want := schema.Personal{Subject: "/customer", Fields: []string{"/address/a~1b", "/address/street", "/email"}}
	if !ok || !reflect.DeepEqual(p, want) {
		t.Fatalf("Personal v2 = %+v, %v; want %+v", p, ok, want)
	}
	if p, ok := reg.Personal("Tagged", 1); !ok || p.Subject != "/who" || !reflect.DeepEqual(p.Fields, []string{"/mail"}) {
		t.Fatalf("Personal v1 = %+v, %v", p, ok)
	}
	if _, ok := reg.Personal("Nope", 1); ok {
		t.Fatal("an unknown type has personal fields")
	}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"subject not a string", schema.Register[badSubject](reg, "BadSubject", 1, []byte(`{}`)), "not a string"},
		{"unknown tag", schema.Register[badTag](reg, "BadTag", 1, []byte(`{}`)), "unknown tag"},
		{"two subjects", schema.Register[twoSubjects](reg, "TwoSubjects", 1, []byte(`{}`)), "two fields"},
		{"no subject", schema.Register[personalNoSubject](reg, "NoSubject", 1, []byte(`{}`)), "no subject"},
		{"schema without subject", reg.RegisterVersion("Bare", 1, []byte(`{"properties":{"e":{"x-strata-personal":true}}}`)), "no property marked"},
		{"subject personal", reg.RegisterVersion("Both", 1, []byte(`{"properties":{"e":{"x-strata-personal":true,"x-strata-subject":true}}}`)), "cannot be personal"},
		{"schema and tag disagree", schema.Register[tagged](schema.NewRegistry(), "Tagged", 1, []byte(v1)), "the struct tag"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, c.err, c.want)
		}
	}
}

// An upcast event whose personal field is erased still decodes: the
// current schema's failures at erased personal fields are skipped, and
// only those.
func TestDecodeErasedUpcast(t *testing.T) {
	reg := schema.NewRegistry()
	v1 := `{"type":"object","properties":{"customer":{"type":"string","x-strata-subject":true},"email":{"type":"string","x-strata-personal":true}}}`
	v2 := `{"type":"object","required":["email","n"],"properties":{"customer":{"type":"string"},"email":{"type":"string","format":"email"},"n":{"type":"integer","minimum":1}}}`
	if err := reg.RegisterVersion("Up", 1, []byte(v1)); err != nil {
		t.Fatal(err)
	}
	if err := schema.Register[tagged](reg, "Up", 2, []byte(v2)); err != nil {
		t.Fatal(err)
	}
	if err := reg.Upcast("Up", 1, func(doc map[string]any) (map[string]any, error) { doc["n"] = 1; return doc, nil }); err != nil {
		t.Fatal(err)
	}
	e := eventstore.Event{Type: "Up", SchemaVersion: 1, Data: []byte(`{"customer":"c","email":"` + schema.Erased + `"}`)}
	v, err := schema.DecodeAs[tagged](reg, e)
	if err != nil || !schema.IsErased(v.Email) {
		t.Fatalf("decode an erased upcast event: %+v, %v", v, err)
	}
	// A field that is not erased is still validated.
	e.Data = []byte(`{"customer":"c","email":"not an address"}`)
	if _, err := reg.Decode(e); err == nil {
		t.Fatal("an invalid email decoded")
	}
}

type contact struct {
	Email string `json:"email" strata:"personal"`
}

type embedsPersonal struct {
	contact
	Customer string `json:"customer" strata:"subject"`
}

type listsPersonal struct {
	Customer string    `json:"customer" strata:"subject"`
	Contacts []contact `json:"contacts"`
}

// A personal declaration the sealer would not see (in an array's items, a
// combinator, a definition, a nested or embedded Go type) is a
// registration error: ignored, the field would be stored in clear.
func TestPersonalDeclarationsOutOfReach(t *testing.T) {
	const subj = `"customer":{"type":"string","x-strata-subject":true}`
	for name, s := range map[string]string{
		"items":                `{"properties":{` + subj + `,"emails":{"type":"array","items":{"type":"string","x-strata-personal":true}}}}`,
		"items' properties":    `{"properties":{` + subj + `,"addrs":{"type":"array","items":{"properties":{"street":{"x-strata-personal":true}}}}}}`,
		"allOf":                `{"properties":{` + subj + `},"allOf":[{"properties":{"email":{"x-strata-personal":true}}}]}`,
		"$defs":                `{"properties":{` + subj + `,"a":{"$ref":"#/$defs/a"}},"$defs":{"a":{"properties":{"email":{"x-strata-personal":true}}}}}`,
		"additionalProperties": `{"properties":{` + subj + `},"additionalProperties":{"x-strata-personal":true}}`,
		"patternProperties":    `{"properties":{` + subj + `},"patternProperties":{"^e":{"x-strata-personal":true}}}`,
		"not a boolean":        `{"properties":{` + subj + `,"email":{"x-strata-personal":"true"}}}`,
		"subject in items":     `{"properties":{"ids":{"items":{"x-strata-subject":true}},"email":{"x-strata-personal":true}}}`,
	} {
		if err := schema.NewRegistry().RegisterVersion("Out", 1, []byte(s)); err == nil || !strings.Contains(err.Error(), "x-strata-") {
			t.Errorf("%s: %v, want an error naming the annotation", name, err)
		}
	}
	if err := schema.Register[embedsPersonal](schema.NewRegistry(), "Embeds", 1, []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "Email") {
		t.Errorf("a personal field of an embedded struct: %v, want an error naming it", err)
	}
	if err := schema.Register[listsPersonal](schema.NewRegistry(), "Lists", 1, []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "Email") {
		t.Errorf("a personal field of a struct in a slice: %v, want an error naming it", err)
	}
	// A whole array may be personal, and annotations inside a personal
	// property are covered by it.
	ok := `{"properties":{` + subj + `,"emails":{"type":"array","x-strata-personal":true,"items":{"x-strata-personal":true}},"plain":{"x-strata-personal":false}}}`
	if err := schema.NewRegistry().RegisterVersion("Ok", 1, []byte(ok)); err != nil {
		t.Errorf("a personal array: %v", err)
	}
}

// A current version that keeps, not personal, a property an older version
// marks personal is a registration error, whichever is registered last:
// its new events would store the value in clear, and an old event's
// erased value would fail its validation.
func TestPersonalDroppedByNewVersion(t *testing.T) {
	v1 := `{"properties":{"customer":{"type":"string","x-strata-subject":true},"email":{"type":"string","x-strata-personal":true}}}`
	v2 := `{"properties":{"customer":{"type":"string"},"email":{"type":"string","format":"email"}}}`
	type plain struct {
		Customer string `json:"customer"`
		Email    string `json:"email"`
	}
	reg := schema.NewRegistry()
	if err := reg.RegisterVersion("Dropped", 1, []byte(v1)); err != nil {
		t.Fatal(err)
	}
	if err := schema.Register[plain](reg, "Dropped", 2, []byte(v2)); err == nil || !strings.Contains(err.Error(), "/email") {
		t.Errorf("current version dropping the personal mark, registered last: %v", err)
	}
	reg = schema.NewRegistry()
	if err := schema.Register[plain](reg, "Dropped", 2, []byte(v2)); err != nil {
		t.Fatal(err)
	}
	if err := reg.RegisterVersion("Dropped", 1, []byte(v1)); err == nil || !strings.Contains(err.Error(), "/email") {
		t.Errorf("older version registered last: %v", err)
	}
	// Dropping the property altogether, or keeping it personal (by tag), is fine.
	reg = schema.NewRegistry()
	if err := reg.RegisterVersion("Kept", 1, []byte(v1)); err != nil {
		t.Fatal(err)
	}
	if err := schema.Register[tagged](reg, "Kept", 2, []byte(`{"properties":{"customer":{"type":"string"},"email":{"type":"string"}}}`)); err != nil {
		t.Errorf("kept personal by a tag: %v", err)
	}
	reg = schema.NewRegistry()
	if err := reg.RegisterVersion("Gone", 1, []byte(v1)); err != nil {
		t.Fatal(err)
	}
	type gone struct {
		Customer string `json:"customer"`
	}
	if err := schema.Register[gone](reg, "Gone", 2, []byte(`{"properties":{"customer":{"type":"string"}}}`)); err != nil {
		t.Errorf("property dropped: %v", err)
	}
}

package shred_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// Signup is an event with personal fields: declared by struct tags on
// the Go type and by annotations in the schema (address, nested).
type Signup struct {
	Customer string   `json:"customer" strata:"subject"`
	Email    string   `json:"email" strata:"personal"`
	Age      int      `json:"age,omitempty" strata:"personal"`
	Address  *Address `json:"address,omitempty"`
	Plan     string   `json:"plan"`
}

type Address struct {
	Street string `json:"street"`
	City   string `json:"city"`
}

const signupSchema = `{
  "type": "object",
  "required": ["customer", "email", "plan"],
  "properties": {
    "customer": {"type": "string", "minLength": 1},
    "email": {"type": "string", "format": "email"},
    "age": {"type": "integer", "minimum": 0},
    "address": {"type": "object", "properties": {
      "street": {"type": "string", "x-strata-personal": true},
      "city": {"type": "string"}
    }},
    "plan": {"type": "string"}
  }
}`

// Note has no personal field.
type Note struct {
	Text string `json:"text"`
}

type fixture struct {
	db    *pgtest.DB
	reg   *schema.Registry
	sh    *shred.Shredder
	store *eventstore.Store
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db := pgtest.New(t)
	reg := schema.NewRegistry()
	if err := schema.Register[Signup](reg, "Signup", 1, []byte(signupSchema)); err != nil {
		t.Fatal(err)
	}
	if err := schema.Register[Note](reg, "Note", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	sh := shred.New(db.Pool, &shred.Config{Schema: db.Schema, Registry: reg})
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: reg, Sealer: sh, Opener: sh})
	return &fixture{db: db, reg: reg, sh: sh, store: store}
}

func (f *fixture) append(t testing.TB, stream string, evs ...any) eventstore.AppendResult {
	t.Helper()
	var nes []eventstore.NewEvent
	for _, v := range evs {
		ne, err := f.reg.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		nes = append(nes, ne)
	}
	res, err := f.store.Append(context.Background(), stream, eventstore.Any, nes...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (f *fixture) read(t testing.TB, stream string) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for e, err := range f.store.ReadStream(context.Background(), stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// scanSchema returns the hits of pgtest.FindText in the schema, which must
// have the events and key tables.
func scanSchema(t testing.TB, pool *pgxpool.Pool, schemaName string, secrets []string) []string {
	t.Helper()
	tables, hits := pgtest.FindText(t, pool, schemaName, secrets)
	if !slices.Contains(tables, "events") || !slices.Contains(tables, "subject_keys") {
		t.Fatalf("tables %v: events or subject_keys missing", tables)
	}
	return hits
}

package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// subject forget: stream show prints the subject's personal field in
// clear while its key exists and erased after; another subject's stays.
func TestSubjectForget(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	reg := schema.NewRegistry()
	const sch = `{"type":"object","properties":{
		"customer":{"type":"string","x-strata-subject":true},
		"email":{"type":"string","x-strata-personal":true}}}`
	if err := reg.RegisterVersion("Signed", 1, []byte(sch)); err != nil {
		t.Fatal(err)
	}
	sh := shred.New(d.db.Pool, &shred.Config{Schema: d.db.Schema, Registry: reg})
	store := eventstore.New(d.db.Pool, &eventstore.Config{Schema: d.db.Schema, Validator: reg, Sealer: sh, Opener: sh})
	for _, c := range []string{"ada", "bob"} {
		ev := eventstore.NewEvent{Type: "Signed", Data: []byte(`{"customer":"c-` + c + `","email":"` + c + `@example.com"}`)}
		if _, err := store.Append(ctx, "account-"+c, eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	show := func(stream, want, not string) {
		t.Helper()
		r := d.embedded(cli.Config{}, "stream", "show", stream)
		if r.code != 0 || !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, not) {
			t.Fatalf("stream show %s: want %q and not %q in:\n%s", stream, want, not, r)
		}
	}
	show("account-ada", `"email":"ada@example.com"`, shred.Prefix)
	r := d.embedded(cli.Config{}, "subject", "forget", "c-ada")
	if r.code != 0 || !strings.Contains(r.stdout, "forgotten") {
		t.Fatalf("subject forget: %s", r)
	}
	show("account-ada", `"email":"`+schema.Erased+`"`, "ada@example.com")
	show("account-bob", `"email":"bob@example.com"`, schema.Erased)
	if r := d.embedded(cli.Config{}, "--json", "subject", "forgotten"); r.code != 0 || !strings.Contains(r.stdout, `"c-ada"`) {
		t.Fatalf("subject forgotten: %s", r)
	}
	if r := d.embedded(cli.Config{}, "subject", "forget", ""); r.code != 2 {
		t.Fatalf("forget of an empty subject: %s", r)
	}

	// Embedded with the application's Runner: each projection's Forget
	// runs in the key's transaction.
	if _, err := d.db.Pool.Exec(ctx, `CREATE TABLE `+store.Table("forgot")+` (subject text)`); err != nil {
		t.Fatal(err)
	}
	runner := projection.NewRunner(store, []projection.Projection{{
		Name:    "accounts",
		Handler: projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return nil }),
		Forget: func(ctx context.Context, tx pgx.Tx, subject string) error {
			_, err := tx.Exec(ctx, `INSERT INTO `+store.Table("forgot")+` VALUES ($1)`, subject)
			return err
		},
	}}, nil)
	if r := d.embedded(cli.Config{Projections: runner}, "subject", "forget", "c-bob"); r.code != 0 {
		t.Fatalf("embedded subject forget: %s", r)
	}
	var got string
	if err := d.db.Pool.QueryRow(ctx, `SELECT subject FROM `+store.Table("forgot")).Scan(&got); err != nil || got != "c-bob" {
		t.Fatalf("the projection's Forget: %q %v", got, err)
	}
	show("account-bob", `"email":"`+schema.Erased+`"`, "bob@example.com")
}

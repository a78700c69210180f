package shred_test

import (
	"context"
	"errors"
	"testing"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// As the application role of migrations.GrantApplication, sealing,
// opening, snapshots and forgetting work; the role cannot give a
// forgotten subject a key again (deleting its row, or writing a key into
// it), nor drop the record of the streams a subject's data went to.
func TestApplicationRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	app := f.db.AppPool(t)
	sh := shred.New(app, &shred.Config{Schema: f.db.Schema, Registry: f.reg})
	store := eventstore.New(app, &eventstore.Config{Schema: f.db.Schema, Validator: f.reg, Sealer: sh, Opener: sh})
	ne, err := f.reg.Encode(Signup{Customer: "c-ada", Email: "ada@example.com", Plan: "pro"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "account-ada", eventstore.Any, ne); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "account-ada", Version: 1, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := sh.Forget(ctx, "c-ada"); err != nil {
		t.Fatal(err)
	}
	for e, err := range store.ReadStream(ctx, "account-ada", 0) {
		if err != nil {
			t.Fatal(err)
		}
		if v, err := schema.DecodeAs[Signup](f.reg, e); err != nil || v.Email != schema.Erased {
			t.Fatalf("read as the application role after forget: %+v %v", v, err)
		}
	}
	keys, streams := f.store.Table("subject_keys"), f.store.Table("subject_streams")
	for _, sql := range []string{
		`DELETE FROM ` + keys + ` WHERE subject = 'c-ada'`,
		`UPDATE ` + keys + ` SET wrapped_key = '\x00', forgotten_at = NULL WHERE subject = 'c-ada'`,
		`DELETE FROM ` + streams,
		`TRUNCATE ` + keys,
	} {
		if _, err := app.Exec(ctx, sql); err == nil {
			t.Errorf("the application role ran %s", sql)
		}
	}
	if _, err := store.Append(ctx, "account-ada", eventstore.Any, ne); !errors.Is(err, shred.ErrForgotten) {
		t.Fatalf("append for the forgotten subject: %v", err)
	}
}

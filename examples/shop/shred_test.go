package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// Crypto-shredding end to end: the shop runs on its default broker
// (Strata's Pub/Sub, so the relay's copies of the events are in the same
// schema) with the fulfilment workflow; then customer ada (order 1005) is
// forgotten.
// No table of the schema holds ada's email any more, in any column;
// other customers' data reads back intact; a rebuild of the read model
// gives ada's row with the erased email.
func TestShopForgetsACustomer(t *testing.T) {
	t.Parallel()
	name, out, errOut, code := runShop(t, "-orders", "5", "-workflow=true", "-timeout", "2m")
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg, err := newRegistry()
	if err == nil {
		err = registerFulfilment(reg)
	}
	if err != nil {
		t.Fatal(err)
	}
	sh := shred.New(pool, &shred.Config{Schema: name, Registry: reg})
	store := eventstore.New(pool, &eventstore.Config{Schema: name, Validator: reg, Sealer: sh, Opener: sh})

	// Before: the emails are ciphertext everywhere but in the read model,
	// which the projection wrote from the opened events; the Pub/Sub copies
	// hold the sealed values.
	emails := []string{"ada@example.com", "grace@example.com", "margaret@example.com"}
	hits := scanTables(t, pool, name, emails)
	for _, h := range hits {
		if !strings.HasPrefix(h, "order_summary:") {
			t.Errorf("plaintext outside the read model: %s", h)
		}
	}
	if len(hits) != len(emails) {
		t.Errorf("the read model holds %d emails, want %d: %v", len(hits), len(emails), hits)
	}
	var copies int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+store.Table("events")+` WHERE event_type = 'watermill.message' AND data::text LIKE '%'||$1||'%'`, shred.Prefix).Scan(&copies); err != nil || copies == 0 {
		t.Fatalf("no Pub/Sub copy holds a sealed value (%d, %v)", copies, err)
	}

	runner := projection.NewRunner(store, []projection.Projection{summaryProjection(store, reg)}, nil)
	if err := runner.Forget(ctx, sh, "ada"); err != nil {
		t.Fatal(err)
	}
	if hits := scanTables(t, pool, name, []string{"ada@example.com"}); len(hits) > 0 {
		t.Fatalf("ada's email after forget:\n%s", strings.Join(hits, "\n"))
	}
	// Every read gives the erased value for ada and the plaintext for
	// the others: the order stream, the workflow's stream, the Pub/Sub copy.
	for stream, want := range map[string]string{"order-1005": schema.Erased, "order-1001": "grace@example.com",
		"fulfilment-1005": schema.Erased, "fulfilment-1001": "grace@example.com"} {
		var got []string
		for e, err := range store.ReadStream(ctx, stream, 0) {
			if err != nil {
				t.Fatalf("%s: %v", stream, err)
			}
			v, err := reg.Decode(e)
			if err != nil {
				t.Fatalf("%s: decode %s: %v", stream, e.Type, err)
			}
			switch ev := v.(type) {
			case OrderPlaced:
				got = append(got, ev.Email)
			case FulfilmentStarted:
				got = append(got, ev.Email)
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: emails %v, want %s", stream, got, want)
		}
	}
	if rows := summaryEmails(t, pool, store); rows["1005"] != schema.Erased || rows["1001"] != "grace@example.com" {
		t.Fatalf("read model after forget: %v", rows)
	}
	// A rebuild after forget gives the erased read model.
	if _, err := pool.Exec(ctx, `UPDATE `+store.Table("order_summary")+` SET email = 'stale'`); err != nil {
		t.Fatal(err)
	}
	if err := runner.Rebuild(ctx, "order_summary", nil); err != nil {
		t.Fatal(err)
	}
	rows := summaryEmails(t, pool, store)
	if rows["1005"] != schema.Erased || rows["1001"] != "grace@example.com" || rows["1000"] != "margaret@example.com" || len(rows) != 6 {
		t.Fatalf("read model rebuilt after forget: %v", rows)
	}
	if hits := scanTables(t, pool, name, []string{"ada@example.com"}); len(hits) > 0 {
		t.Fatalf("ada's email after the rebuild:\n%s", strings.Join(hits, "\n"))
	}
}

func summaryEmails(t *testing.T, pool *pgxpool.Pool, store *eventstore.Store) map[string]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT order_id, email FROM `+store.Table("order_summary"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var id, email string
	if _, err := pgx.ForEachRow(rows, []any{&id, &email}, func() error { out[id] = email; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// scanTables returns the hits of pgtest.FindText in the schema, which
// must have the tables the shop and Strata make.
func scanTables(t *testing.T, pool *pgxpool.Pool, schemaName string, secrets []string) []string {
	t.Helper()
	tables, hits := pgtest.FindText(t, pool, schemaName, secrets)
	for _, want := range []string{"events", "snapshots", "dead_letters", "order_summary", "processed_messages", "workflow_inbox", "subject_keys"} {
		if !slices.Contains(tables, want) {
			t.Fatalf("tables %v: %s missing", tables, want)
		}
	}
	return hits
}

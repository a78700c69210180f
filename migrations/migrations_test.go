package migrations_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/migrations"
)

func TestApplyConcurrentlyAndTwice(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = migrations.Apply(ctx, db.Pool, db.Schema) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := migrations.Apply(ctx, db.Pool, db.Schema); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+db.Schema+`.schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(all) {
		t.Fatalf("%d migrations recorded, %d embedded", n, len(all))
	}
	// Numbers only increase: ranges of numbers are set aside for work in
	// progress, so the numbers in a release may have gaps.
	for i, m := range all {
		if m.Version < 1 || i > 0 && m.Version <= all[i-1].Version {
			t.Fatalf("migration %s numbered %d after %d: numbers must increase from 1", m.Name, m.Version, all[max(i-1, 0)].Version)
		}
	}
	var tables int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('events', 'streams', 'snapshots')`, db.Schema).Scan(&tables); err != nil || tables != 3 {
		t.Fatalf("tables: %d %v", tables, err)
	}
}

func TestBadSchemaName(t *testing.T) {
	for _, name := range []string{"Strata", "1abc", "a-b", `x"; DROP`, "ünï", string(make([]byte, 64))} {
		if err := migrations.CheckSchemaName(name); !errors.Is(err, migrations.ErrBadSchemaName) {
			t.Fatalf("%q accepted", name)
		}
	}
	if err := migrations.Apply(context.Background(), nil, "Bad-Name"); !errors.Is(err, migrations.ErrBadSchemaName) {
		t.Fatalf("Apply took a bad name: %v", err)
	}
}

// The application role of GrantApplication can do its work but cannot
// rewrite or delete the log, nor change the schema.
func TestGrantApplication(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	app := db.AppPool(t)
	// A second run (after an upgrade, say) leaves the same grants.
	if err := migrations.GrantApplication(ctx, db.Pool, db.Schema, db.Schema+"_app"); err != nil {
		t.Fatalf("second grant: %v", err)
	}
	s := db.Schema
	allowed := []string{
		// An append is one statement that moves the stream's row and
		// inserts its next events (see migration 0009).
		`WITH st AS (INSERT INTO ` + s + `.streams (stream_id, category, version, last_tx) VALUES ('a-1', 'a', 1, pg_current_xact_id()::text::bigint) RETURNING 1)
			INSERT INTO ` + s + `.events (event_id, stream_id, version, category, event_type, schema_version, data) SELECT gen_random_uuid(), 'a-1', 1, 'a', 'T', 1, '{}' FROM st`,
		`WITH st AS (UPDATE ` + s + `.streams SET version = 2, last_tx = pg_current_xact_id()::text::bigint, updated_at = now() WHERE stream_id = 'a-1' RETURNING 1)
			INSERT INTO ` + s + `.events (event_id, stream_id, version, category, event_type, schema_version, data) SELECT gen_random_uuid(), 'a-1', 2, 'a', 'T', 1, '{}' FROM st`,
		`SELECT count(*) FROM ` + s + `.events`,
		`INSERT INTO ` + s + `.subscriptions (name, partition, partitions) VALUES ('p', 0, 1)`,
		`DELETE FROM ` + s + `.dead_letters`,
	}
	for _, q := range allowed {
		if _, err := app.Exec(ctx, q); err != nil {
			t.Fatalf("application role cannot %q: %v", q, err)
		}
	}
	refused := []string{
		`UPDATE ` + s + `.events SET data = '{"forged":true}'`,
		`DELETE FROM ` + s + `.events`,
		`TRUNCATE ` + s + `.events`,
		`DELETE FROM ` + s + `.streams`,
		`UPDATE ` + s + `.streams SET version = 1 WHERE stream_id = 'a-1'`,
		`INSERT INTO ` + s + `.events (event_id, stream_id, version, category, event_type, schema_version, data, transaction_id) VALUES (gen_random_uuid(), 'a-1', 3, 'a', 'T', 1, '{}', 1)`,
		`DROP TABLE ` + s + `.snapshots`,
		`CREATE TABLE ` + s + `.x (i int)`,
		`DELETE FROM ` + s + `.schema_migrations`,
	}
	for _, q := range refused {
		if _, err := app.Exec(ctx, q); err == nil {
			t.Fatalf("application role may %q", q)
		}
	}
}

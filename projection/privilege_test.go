package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// A projection runs, rebuilds and resets as the least-privilege
// application role of migrations.GrantApplication (its read model table
// created by the owner before the grant, as a migration would).
func TestRunnerAsApplicationRole(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	table := pgx.Identifier{db.Schema, "seen"}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+table+` (event_id uuid PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(db.AppPool(t), &eventstore.Config{Schema: db.Schema})
	for range 10 {
		if _, err := store.Append(ctx, "order-1", eventstore.Any, eventstore.NewEvent{Type: "Tick", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1)`, e.ID)
		return err
	})
	reset := func(ctx context.Context, tx pgx.Tx) error { _, err := tx.Exec(ctx, `DELETE FROM `+table); return err }
	r := projection.NewRunner(store, []projection.Projection{{Name: "seen", Handler: h, Reset: reset}}, &projection.Config{PollInterval: 50 * time.Millisecond})
	count := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	stop := runRunner(t, r)
	pgtest.WaitFor(t, "the read model as the application role", time.Minute, func() bool { return count() == 10 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebuild(ctx, "seen", nil); err != nil {
		t.Fatalf("rebuild as the application role: %v", err)
	}
	if n := count(); n != 10 {
		t.Fatalf("after rebuild: %d rows", n)
	}
	if err := r.Reset(ctx, "seen", eventstore.Position{}); err != nil {
		t.Fatalf("reset as the application role: %v", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after reset: %d rows", n)
	}
}

package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/telemetry"
)

// simulateRestore makes db look like a log restored from a logical dump
// into a new cluster: a row written (by the schema's owner, triggers off,
// as pg_restore --disable-triggers does) with a transaction ID the
// database has not reached. With checkpoint, a subscription's checkpoint
// is moved there instead of an event. It returns the forged ID.
func simulateRestore(t *testing.T, db *pgtest.DB, checkpoint bool) uint64 {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var next int64
	if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	forged := next + 3<<32 + 12345
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	events, subs := pgx.Identifier{db.Schema, "events"}.Sanitize(), pgx.Identifier{db.Schema, "subscriptions"}.Sanitize()
	if checkpoint {
		_, err = tx.Exec(ctx, `INSERT INTO `+subs+` (name, partition, partitions, position_tx, position_seq) VALUES ('projection:restored', 0, 1, $1, 1)`, forged)
	} else {
		_, err = tx.Exec(ctx, `INSERT INTO `+events+` (transaction_id, event_id, stream_id, version, category, event_type, schema_version, data)
			VALUES ($1, gen_random_uuid(), 'restored-1', 1, 'restored', 'E', 1, '{}')`, forged)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return uint64(forged)
}

func TestCheckTransactionIDsFine(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	// Empty, then with events and a checkpoint: fine, for the owner and
	// for the least-privilege role.
	if err := s.CheckTransactionIDs(ctx); err != nil {
		t.Fatalf("empty log: %v", err)
	}
	for i := range 3 {
		if _, err := s.Append(ctx, fmt.Sprintf("order-%d", i), eventstore.Any, ev("E", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	// A checkpoint at the head, as a caught-up subscription has.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{db.Schema, "subscriptions"}.Sanitize()+
		` (name, partition, partitions, position_tx, position_seq) SELECT 'projection:x', 0, 1, transaction_id, position FROM `+
		pgx.Identifier{db.Schema, "events"}.Sanitize()+` ORDER BY transaction_id DESC, position DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	app := eventstore.New(db.AppPool(t), &eventstore.Config{Schema: db.Schema})
	for _, st := range []*eventstore.Store{s, app} {
		if err := st.CheckTransactionIDs(ctx); err != nil {
			t.Fatalf("a normal log: %v", err)
		}
		if h := st.TransactionIDsHealth(ctx); h.State != telemetry.Ready {
			t.Fatalf("health of a normal log: %+v", h)
		}
	}
}

func TestCheckTransactionIDsAfterRestore(t *testing.T) {
	t.Parallel()
	for _, checkpoint := range []bool{false, true} {
		t.Run(fmt.Sprintf("checkpoint=%v", checkpoint), func(t *testing.T) {
			t.Parallel()
			s, db := newStore(t, nil)
			ctx := context.Background()
			if _, err := s.Append(ctx, "order-1", eventstore.Any, ev("E", `{}`)); err != nil {
				t.Fatal(err)
			}
			forged := simulateRestore(t, db, checkpoint)
			err := s.CheckTransactionIDs(ctx)
			if !errors.Is(err, eventstore.ErrTransactionIDsBehind) {
				t.Fatalf("want ErrTransactionIDsBehind, got %v", err)
			}
			e, ok := errors.AsType[*eventstore.TransactionIDsBehindError](err)
			if !ok || e.Highest() != forged || e.Next == 0 || e.Next > forged || e.Epoch() != forged>>32+1 {
				t.Fatalf("error: %+v", e)
			}
			if checkpoint && (e.MaxCheckpoint != forged || e.Subscription != "projection:restored" || e.MaxEvent >= e.Next) {
				t.Fatalf("checkpoint: %+v", e)
			}
			if !checkpoint && (e.MaxEvent != forged || e.MaxCheckpoint != 0) {
				t.Fatalf("event: %+v", e)
			}
			fix := fmt.Sprintf("pg_resetwal -e %d", forged>>32+1)
			if !strings.Contains(err.Error(), fix) {
				t.Fatalf("error does not name the fix %q: %v", fix, err)
			}
			// The least-privilege role sees it too, and health fails.
			app := eventstore.New(db.AppPool(t), &eventstore.Config{Schema: db.Schema})
			if err := app.CheckTransactionIDs(ctx); !errors.Is(err, eventstore.ErrTransactionIDsBehind) {
				t.Fatalf("as the application role: %v", err)
			}
			hh := telemetry.NewHealthHandler(map[string]telemetry.HealthFunc{"strata:transaction-ids": app.TransactionIDsHealth}, nil)
			rep := hh.Check(ctx)
			if h := rep.Checks["strata:transaction-ids"]; rep.State != telemetry.Failing || !strings.Contains(h.Reason, fix) {
				t.Fatalf("health: %+v", rep)
			}
		})
	}
}

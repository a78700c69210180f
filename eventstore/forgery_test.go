package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// Promise 8, attacked: the application role of migrations.GrantApplication
// runs SQL of its own against Strata's tables. Every attempt to forge the
// log must fail with an error and change nothing.

// stateOf returns every row of Strata's tables, read by the schema owner,
// so that a refused statement can be shown to have changed nothing.
func stateOf(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"events", "streams", "snapshots", "subscriptions", "subscription_members", "dead_letters", "projection_rebuilds"} {
		var rows string
		err := db.Pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(r::text, E'\n' ORDER BY r::text), '') FROM `+
			pgx.Identifier{db.Schema, table}.Sanitize()+` r`).Scan(&rows)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(table + ":\n" + rows + "\n")
	}
	return b.String()
}

// A forgery is a statement run as an application role. In its SQL, {s}
// is Strata's schema, {st} a stream of two events (with a snapshot) that
// no other forgery touches, and {new} a stream ID no one has used, so
// that each forgery meets the same state whether the others were refused
// or not.
type forgery struct{ name, sql string }

// forgedStream is the stream {st} of forgery i.
func forgedStream(i int) string { return fmt.Sprintf("order-f%d", i) }

// refuseAll runs each forgery as the role of pool and fails the test for
// any that succeeds or changes a row.
func refuseAll(t *testing.T, db *pgtest.DB, pool *pgxpool.Pool, forgeries []forgery) {
	t.Helper()
	ctx := context.Background()
	schema := pgx.Identifier{db.Schema}.Sanitize()
	for i, f := range forgeries {
		before := stateOf(t, db)
		sql := strings.NewReplacer("{s}", schema, "{st}", forgedStream(i), "{new}", fmt.Sprintf("order-new%d", i)).Replace(f.sql)
		_, err := pool.Exec(ctx, sql)
		if err == nil {
			t.Errorf("%s: the application role may %s", f.name, f.sql)
		} else {
			t.Logf("%s: refused: %v", f.name, err)
		}
		if after := stateOf(t, db); after != before {
			t.Errorf("%s: changed the tables:\nbefore:\n%s\nafter:\n%s", f.name, before, after)
		}
	}
}

// appendSQL is an append to a new stream in one statement, the way the
// store writes one, with extra columns and values for the event (each
// list starting with a comma) and an optional clause after the column
// list.
func appendSQL(stream, category, extraCols, clause, extraVals string) string {
	return `WITH st AS (INSERT INTO {s}.streams (stream_id, category, version, last_tx)
		VALUES ('` + stream + `', 'order', 1, pg_current_xact_id()::text::bigint) RETURNING 1)
	INSERT INTO {s}.events (event_id, stream_id, version, category, event_type, schema_version, data` + extraCols + `) ` + clause + `
	SELECT gen_random_uuid(), '` + stream + `', 1, '` + category + `', 'Forged', 1, '{}'` + extraVals + ` FROM st`
}

const xid = `pg_current_xact_id()::text::bigint`

func TestAppRoleCannotForgeTheLog(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	app := db.AppPool(t)
	s := eventstore.New(app, &eventstore.Config{Schema: db.Schema})
	if _, err := s.Append(ctx, "order-1", eventstore.NoStream, ev("Placed", `{}`), ev("Paid", `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1", Version: 2, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	event := func(stream string, version int) string {
		return `INSERT INTO {s}.events (event_id, stream_id, version, category, event_type, schema_version, data)
			VALUES (gen_random_uuid(), '` + stream + `', ` + strconv.Itoa(version) + `, 'order', 'Forged', 1, '{}')`
	}
	forgeries := []forgery{
		// Columns the database fixes.
		{"event with a transaction ID", appendSQL("{new}", "order", ", transaction_id", "", ", 1")},
		{"event with a time", appendSQL("{new}", "order", ", recorded_at", "", ", '2000-01-01'")},
		{"event with a position", appendSQL("{new}", "order", ", position", "OVERRIDING SYSTEM VALUE", ", 0")},
		{"identity moved back", `SELECT setval(pg_get_serial_sequence('{s}.events', 'position'), 1)`},
		// A stream and its events.
		{"event whose category is not its stream's", appendSQL("{new}", "payment", "", "", "")},
		// Stream state.
		{"huge last_tx", `UPDATE {s}.streams SET last_tx = 9223372036854775807 WHERE stream_id = '{st}'`},
		{"last_tx of another transaction", `UPDATE {s}.streams SET last_tx = 1 WHERE stream_id = '{st}'`},
		{"version moved forward", `UPDATE {s}.streams SET version = version + 1000, last_tx = ` + xid + `, updated_at = now() WHERE stream_id = '{st}'`},
		{"version moved back", `UPDATE {s}.streams SET version = 1, last_tx = ` + xid + ` WHERE stream_id = '{st}'`},
		{"version moved to 0", `UPDATE {s}.streams SET version = 0, last_tx = ` + xid + ` WHERE stream_id = '{st}'`},
		{"stream without events", `INSERT INTO {s}.streams (stream_id, category, version, last_tx) VALUES ('{new}', 'order', 5, ` + xid + `)`},
		{"empty stream", `INSERT INTO {s}.streams (stream_id, category, version, last_tx) VALUES ('{new}', 'order', 0, ` + xid + `)`},
		{"stream renamed", `UPDATE {s}.streams SET stream_id = '{new}' WHERE stream_id = '{st}'`},
		{"stream's category", `UPDATE {s}.streams SET category = 'payment' WHERE stream_id = '{st}'`},
		{"stream's time", `WITH st AS (UPDATE {s}.streams SET version = version + 1, last_tx = ` + xid + `, updated_at = '2000-01-01'
			WHERE stream_id = '{st}' RETURNING version - 1 AS base)
			INSERT INTO {s}.events (event_id, stream_id, version, category, event_type, schema_version, data)
			SELECT gen_random_uuid(), '{st}', base + 1, 'order', 'Forged', 1, '{}' FROM st`},
		{"stream's creation time", `UPDATE {s}.streams SET created_at = '2000-01-01' WHERE stream_id = '{st}'`},
		{"stream deleted", `DELETE FROM {s}.streams WHERE stream_id = '{st}'`},
		// The log itself.
		{"event rewritten", `UPDATE {s}.events SET data = '{"forged": true}'`},
		{"event deleted", `DELETE FROM {s}.events`},
		{"log truncated", `TRUNCATE {s}.events`},
		// A temporary table of the role's own cannot stand in for streams
		// in the database's checks (here: the snapshot's).
		{"temporary streams table", `CREATE TEMP TABLE streams (LIKE {s}.streams INCLUDING DEFAULTS);
			INSERT INTO pg_temp.streams (stream_id, category, version, last_tx) VALUES ('{st}', 'order', 3, ` + xid + `);
			INSERT INTO {s}.snapshots (stream_id, version, schema_version, data) VALUES ('{st}', 3, 1, 'x')
			ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data, created_at = now()`},
		// Nor can it switch the checks off.
		{"triggers off", `SET session_replication_role = replica;
			` + event("{st}", 3)},
		{"trigger disabled", `ALTER TABLE {s}.events DISABLE TRIGGER USER`},
		// Snapshots.
		{"snapshot of a future version", `INSERT INTO {s}.snapshots (stream_id, version, schema_version, data) VALUES ('{st}', 3, 1, 'x')
			ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data`},
		{"snapshot of no stream", `INSERT INTO {s}.snapshots (stream_id, version, schema_version, data) VALUES ('{new}', 1, 1, 'x')`},
		{"snapshot of version 0", `INSERT INTO {s}.snapshots (stream_id, version, schema_version, data) VALUES ('{st}', 0, 1, 'x')
			ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version`},
		{"snapshot moved ahead", `UPDATE {s}.snapshots SET version = 99, created_at = now() WHERE stream_id = '{st}'`},
		{"snapshot's time", `UPDATE {s}.snapshots SET created_at = '2100-01-01' WHERE stream_id = '{st}'`},
	}
	for i := range forgeries {
		if _, err := s.Append(ctx, forgedStream(i), eventstore.NoStream, ev("Placed", `{}`), ev("Paid", `{}`)); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: forgedStream(i), Version: 2, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	refuseAll(t, db, app, forgeries)
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1", Version: 3, Data: []byte("x")}); err == nil {
		t.Error("SaveSnapshot of a version the stream does not have succeeded")
	}

	// The same statements without the forged part go through: what was
	// refused above was the forgery, not the shape of the statement.
	if _, err := app.Exec(ctx, strings.ReplaceAll(appendSQL("order-9", "order", "", "", ""), "{s}", pgx.Identifier{db.Schema}.Sanitize())); err != nil {
		t.Fatalf("a well-formed append in one statement: %v", err)
	}
	// And the store goes on as before.
	if res, err := s.Append(ctx, "order-1", eventstore.Exactly(2), ev("Shipped", `{}`)); err != nil || res.Version != 3 {
		t.Fatalf("append after the forgeries: %+v %v", res, err)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1", Version: 3, Data: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	var versions []int64
	for e, err := range s.ReadStream(ctx, "order-1", 1) {
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, e.Version)
	}
	if len(versions) != 3 || versions[2] != 3 {
		t.Fatalf("order-1 versions %v, want 1..3", versions)
	}
}

// Everything the store writes to the log, it can write as the
// application role: every kind of expectation, one event and many,
// several streams and the same stream twice in one transaction.
func TestAppRoleAppendsEveryWay(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	app := db.AppPool(t)
	s := eventstore.New(app, &eventstore.Config{Schema: db.Schema})
	steps := []struct {
		stream   string
		expected eventstore.ExpectedVersion
		n        int
		want     int64
	}{
		{"a-1", eventstore.NoStream, 1, 1},
		{"a-1", eventstore.Exactly(1), 3, 4},
		{"a-1", eventstore.StreamExists, 1, 5},
		{"a-1", eventstore.Any, 2, 7},
		{"a-2", eventstore.Any, 1, 1},
		{"a-3", eventstore.Any, 4, 4},
		{"a-4", eventstore.NoStream, 5, 5},
	}
	for _, st := range steps {
		events := make([]eventstore.NewEvent, st.n)
		for i := range events {
			events[i] = ev("Tick", `{}`)
		}
		res, err := s.Append(ctx, st.stream, st.expected, events...)
		if err != nil || res.Version != st.want {
			t.Fatalf("append %d to %s: %+v %v", st.n, st.stream, res, err)
		}
	}
	if _, err := s.Append(ctx, "a-1", eventstore.Exactly(1), ev("Tick", `{}`)); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale expectation as the application role: %v", err)
	}
	err := pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
		for _, stream := range []string{"b-1", "b-2", "b-1", "a-1"} {
			if _, err := s.AppendTx(ctx, tx, stream, eventstore.Any, ev("Tick", `{}`), ev("Tock", `{}`)); err != nil {
				return err
			}
		}
		return s.SaveSnapshotTx(ctx, tx, eventstore.Snapshot{StreamID: "b-1", Version: 4, Data: []byte("s")})
	})
	if err != nil {
		t.Fatalf("AppendTx as the application role: %v", err)
	}
	for stream, want := range map[string]int64{"a-1": 9, "b-1": 4, "b-2": 2} {
		if v, err := s.StreamVersion(ctx, stream); err != nil || v != want {
			t.Fatalf("%s at %d (%v), want %d", stream, v, err, want)
		}
	}
}

// A subscription belongs to the role that registered it: another
// application role sharing the schema can read its status but cannot move
// its checkpoint, lease, members, dead letters or rebuild.
func TestAppRoleCannotTouchAnotherRolesSubscription(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	mine, theirs := db.AppPoolAs(t, "billing"), db.AppPoolAs(t, "shipping")
	billing := eventstore.New(mine, &eventstore.Config{Schema: db.Schema})
	shipping := eventstore.New(theirs, &eventstore.Config{Schema: db.Schema})
	res, err := billing.Append(ctx, "order-1", eventstore.NoStream, ev("Placed", `{}`), ev("Paid", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := billing.Subscription(eventstore.SubscriptionConfig{Name: "invoices", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Register(ctx); err != nil {
		t.Fatal(err)
	}
	// The owner's own rows in every table kept per subscription.
	schema := pgx.Identifier{db.Schema}.Sanitize()
	for _, q := range []string{
		`UPDATE {s}.subscriptions SET position_tx = 1, position_seq = 1, owner = 'billing-1', lease_until = now() + interval '1 hour' WHERE name = 'invoices'`,
		`INSERT INTO {s}.subscription_members (name, owner, seen_until) VALUES ('invoices', 'billing-1', now() + interval '1 hour')`,
		`INSERT INTO {s}.dead_letters (subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts)
			SELECT 'invoices', 0, transaction_id, position, event_id, stream_id, event_type, 'boom', 3 FROM {s}.events WHERE version = 1`,
		`INSERT INTO {s}.projection_rebuilds (subscription, target_tx, target_seq, total) VALUES ('invoices', 1, 1, 2)`,
	} {
		if _, err := mine.Exec(ctx, strings.ReplaceAll(q, "{s}", schema)); err != nil {
			t.Fatalf("the subscription's own role: %s: %v", q, err)
		}
	}
	refuseAll(t, db, theirs, []forgery{
		{"checkpoint moved", `UPDATE {s}.subscriptions SET position_tx = 0, position_seq = 0 WHERE name = 'invoices'`},
		{"checkpoint moved ahead", `UPDATE {s}.subscriptions SET position_tx = 9223372036854775807 WHERE name = 'invoices'`},
		{"lease taken", `UPDATE {s}.subscriptions SET owner = 'shipping-1', lease_until = 'infinity' WHERE name = 'invoices'`},
		{"reset counted", `UPDATE {s}.subscriptions SET resets = resets + 1 WHERE name = 'invoices'`},
		{"subscription deleted", `DELETE FROM {s}.subscriptions WHERE name = 'invoices'`},
		{"partition added", `INSERT INTO {s}.subscriptions (name, partition, partitions) VALUES ('invoices', 2, 3)`},
		{"registered over", `INSERT INTO {s}.subscriptions (name, partition, partitions) VALUES ('invoices', 0, 2)
			ON CONFLICT (name, partition) DO UPDATE SET categories = '{payment}'`},
		{"ownership taken", `UPDATE {s}.subscriptions SET app_role = current_user WHERE name = 'invoices'`},
		{"subscription owned by choice", `INSERT INTO {s}.subscriptions (name, partition, partitions, app_role) VALUES ('other', 0, 1, 'nobody')`},
		{"member added", `INSERT INTO {s}.subscription_members (name, owner, seen_until) VALUES ('invoices', 'shipping-1', 'infinity')`},
		{"member kept alive", `UPDATE {s}.subscription_members SET seen_until = 'infinity' WHERE name = 'invoices'`},
		{"member removed", `DELETE FROM {s}.subscription_members WHERE name = 'invoices'`},
		{"dead letter added", `INSERT INTO {s}.dead_letters (subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts)
			SELECT 'invoices', 0, transaction_id, position, event_id, stream_id, event_type, 'forged', 1 FROM {s}.events WHERE version = 2`},
		{"dead letter retried", `UPDATE {s}.dead_letters SET retry_requested = true WHERE subscription = 'invoices'`},
		{"dead letter dropped", `DELETE FROM {s}.dead_letters WHERE subscription = 'invoices'`},
		{"dead letter for a subscription not registered yet", `INSERT INTO {s}.dead_letters (subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts)
			SELECT 'later', 0, transaction_id, position, event_id, stream_id, event_type, 'forged', 1 FROM {s}.events WHERE version = 2`},
		{"member of a subscription not registered yet", `INSERT INTO {s}.subscription_members (name, owner, seen_until) VALUES ('later', 'x', 'infinity')`},
		{"rebuild restarted", `UPDATE {s}.projection_rebuilds SET target_tx = 0, total = 0 WHERE subscription = 'invoices'`},
		{"rebuild dropped", `DELETE FROM {s}.projection_rebuilds WHERE subscription = 'invoices'`},
		{"rebuild started", `INSERT INTO {s}.projection_rebuilds (subscription, target_tx, target_seq, total) VALUES ('invoices', 1, 1, 0)
			ON CONFLICT (subscription) DO UPDATE SET target_tx = 1`},
	})
	// Through the store's own API, as the other role.
	before := stateOf(t, db)
	if err := shipping.ResetSubscription(ctx, "invoices", eventstore.Position{}, nil); err == nil {
		t.Error("another role reset the subscription")
	}
	if err := shipping.DeleteSubscription(ctx, "invoices"); err == nil {
		t.Error("another role deleted the subscription")
	}
	if _, err := shipping.RetryDeadLetters(ctx, "invoices", ""); err == nil {
		t.Error("another role retried the subscription's dead letters")
	}
	theirSub, err := shipping.Subscription(eventstore.SubscriptionConfig{Name: "invoices", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := theirSub.Register(ctx); err == nil {
		t.Error("another role registered the subscription over its owner")
	}
	if after := stateOf(t, db); after != before {
		t.Errorf("the other role's store changed the tables:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// It can read them, and run subscriptions of its own.
	if st, err := shipping.SubscriptionStatuses(ctx, "invoices"); err != nil || len(st) != 2 {
		t.Fatalf("status as another role: %v %v", st, err)
	}
	own, err := shipping.Subscription(eventstore.SubscriptionConfig{Name: "parcels", PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	stop := run(t, own, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		for range events {
			done <- struct{}{}
		}
		return nil
	})
	for range 2 {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("the other role's own subscription delivered nothing")
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The owner still does all of it.
	if err := billing.ResetSubscription(ctx, "invoices", res.Position, nil); err != nil {
		t.Fatalf("the owner's reset: %v", err)
	}
	if _, err := billing.RetryDeadLetters(ctx, "invoices", ""); err != nil {
		t.Fatalf("the owner's retry: %v", err)
	}
	if err := billing.DeleteSubscription(ctx, "invoices"); err != nil {
		t.Fatalf("the owner's delete: %v", err)
	}
}

// A subscription registered by the schema's owner (or before migration
// 0009) is adopted by the first application role that runs it, and is
// then that role's.
func TestAppRoleAdoptsUnownedSubscription(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	admin := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	sub, err := admin.Subscription(eventstore.SubscriptionConfig{Name: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Register(ctx); err != nil {
		t.Fatal(err)
	}
	first, second := db.AppPoolAs(t, "first"), db.AppPoolAs(t, "second")
	if err := eventstore.New(first, &eventstore.Config{Schema: db.Schema}).ResetSubscription(ctx, "legacy", eventstore.Position{}, nil); err != nil {
		t.Fatalf("adopting the owner's subscription: %v", err)
	}
	if err := eventstore.New(second, &eventstore.Config{Schema: db.Schema}).ResetSubscription(ctx, "legacy", eventstore.Position{}, nil); err == nil {
		t.Fatal("a second role took an adopted subscription")
	}
	// The schema's owner still may.
	if err := admin.ResetSubscription(ctx, "legacy", eventstore.Position{}, nil); err != nil {
		t.Fatalf("the schema owner's reset: %v", err)
	}
}

package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// TestPrincipal appends under three principals (and none) as the
// least-privilege application role, through Append and AppendTx, one and
// many events at a time, and reads back who wrote what: each event's
// principal and the database role that appended it, and a principal's
// events in log order, page by page.
func TestPrincipal(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	app := db.AppPool(t)
	s := eventstore.New(app, &eventstore.Config{Schema: db.Schema})
	ctx := context.Background()
	alice, bob := eventstore.WithPrincipal(ctx, "alice"), eventstore.WithPrincipal(ctx, "bob@example.com")
	// An event's metadata cannot stand in for the principal.
	forged := ev("Placed", `{}`)
	forged.Metadata.Values = map[string]string{"principal": "bob@example.com"}
	var want []uuid.UUID // alice's events, in order
	mustAppend := func(ctx context.Context, stream string, evs ...eventstore.NewEvent) {
		t.Helper()
		for i := range evs {
			evs[i].ID = uuid.Must(uuid.NewV7())
		}
		if _, err := s.Append(ctx, stream, eventstore.Any, evs...); err != nil {
			t.Fatal(err)
		}
		if eventstore.PrincipalFrom(ctx) == "alice" {
			for _, e := range evs {
				want = append(want, e.ID)
			}
		}
	}
	mustAppend(alice, "order-1", forged)
	mustAppend(bob, "order-1", ev("Paid", `{}`), ev("Shipped", `{}`))
	mustAppend(ctx, "order-2", ev("Placed", `{}`))
	mustAppend(alice, "order-2", ev("Paid", `{}`), ev("Shipped", `{}`), ev("Closed", `{}`))
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	txEvent := ev("Placed", `{}`)
	txEvent.ID = uuid.Must(uuid.NewV7())
	if _, err := s.AppendTx(alice, tx, "order-3", eventstore.NoStream, txEvent); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want, txEvent.ID)

	var role string
	if err := app.QueryRow(ctx, `SELECT session_user`).Scan(&role); err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	principals := map[uuid.UUID]string{}
	for _, stream := range []string{"order-1", "order-2", "order-3"} {
		for e, err := range s.ReadStream(ctx, stream, 0) {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, e.ID)
		}
	}
	audits, err := s.Audits(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		a := audits[id]
		if a.Role != role {
			t.Errorf("event %s: role %q, want %q", id, a.Role, role)
		}
		principals[id] = a.Principal
	}
	counts := map[string]int{}
	for _, p := range principals {
		counts[p]++
	}
	if counts["alice"] != 5 || counts["bob@example.com"] != 2 || counts[""] != 1 || len(ids) != 8 {
		t.Fatalf("principals %v over %d events", counts, len(ids))
	}

	var got []uuid.UUID
	var after eventstore.Position
	for range 10 {
		page, err := s.ReadByPrincipal(ctx, "alice", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			got = append(got, e.ID)
		}
		after = page[len(page)-1].Position
	}
	if len(got) != len(want) {
		t.Fatalf("alice's events: %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("alice's events out of order: %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"", "a\x00b", "\xff", strings.Repeat("x", eventstore.MaxPrincipalLength+1)} {
		if _, err := s.ReadByPrincipal(ctx, bad, eventstore.Position{}, 10); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Errorf("ReadByPrincipal(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestPrincipalRefused sweeps the principals an append refuses — one
// byte too long, a NUL byte at each end and inside, bytes that are not
// UTF-8 — and the longest it takes: a refused append writes nothing.
func TestPrincipalRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	s := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	ctx := context.Background()
	for _, p := range []string{
		strings.Repeat("p", eventstore.MaxPrincipalLength+1),
		strings.Repeat("é", eventstore.MaxPrincipalLength/2) + "x",
		"\x00alice", "alice\x00", "al\x00ice",
		"\xff", "alice\xc3", "\xed\xa0\x80", // a lone byte, a cut sequence, a surrogate
	} {
		_, err := s.Append(eventstore.WithPrincipal(ctx, p), "refused-1", eventstore.Any, ev("Placed", `{}`), ev("Paid", `{}`))
		var ie *eventstore.InvalidEventError
		if !errors.As(err, &ie) || ie.Field != "principal" {
			t.Errorf("principal %q: %v, want an *InvalidEventError on the principal", p, err)
		}
	}
	if _, err := s.StreamVersion(ctx, "refused-1"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("a refused append wrote: %v", err)
	}
	longest := strings.Repeat("é", eventstore.MaxPrincipalLength/2)
	if _, err := s.Append(eventstore.WithPrincipal(ctx, longest), "accepted-1", eventstore.NoStream, ev("Placed", `{}`)); err != nil {
		t.Fatalf("a principal of %d bytes: %v", len(longest), err)
	}
	page, err := s.ReadByPrincipal(ctx, longest, eventstore.Position{}, 10)
	if err != nil || len(page) != 1 {
		t.Fatalf("ReadByPrincipal(longest): %d events, %v", len(page), err)
	}
}

// TestPrincipalNotForgeable shows what the database holds against the
// application role: it cannot name db_role in an insert, nor change an
// event's principal or role afterwards. (It can insert any principal: the
// database cannot know who the application's user is.)
func TestPrincipalNotForgeable(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	app := db.AppPool(t)
	s := eventstore.New(app, &eventstore.Config{Schema: db.Schema})
	ctx := context.Background()
	if _, err := s.Append(eventstore.WithPrincipal(ctx, "alice"), "order-1", eventstore.NoStream, ev("Placed", `{}`)); err != nil {
		t.Fatal(err)
	}
	events := pgx.Identifier{db.Schema, "events"}.Sanitize()
	for _, q := range []string{
		`INSERT INTO ` + events + ` (event_id, stream_id, version, category, event_type, schema_version, data, db_role)
			VALUES (gen_random_uuid(), 'order-2', 1, 'order', 'Placed', 1, '{}', 'postgres')`,
		`UPDATE ` + events + ` SET principal = 'mallory'`,
		`UPDATE ` + events + ` SET db_role = 'postgres'`,
		`DELETE FROM ` + events,
	} {
		_, err := app.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s: %v, want permission denied (42501)", q, err)
		}
	}
	var principal, role string
	if err := db.Pool.QueryRow(ctx, `SELECT principal, db_role FROM `+events).Scan(&principal, &role); err != nil {
		t.Fatal(err)
	}
	if principal != "alice" || !strings.HasSuffix(role, "_app") {
		t.Fatalf("principal %q, role %q after the attempts", principal, role)
	}
}

package migrations_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/migrations"
)

// Bad input, swept, not sampled (promise 5): schema and role names of
// every length Postgres allows for an identifier (63 bytes) and more, in
// runes of 1 to 4 bytes, and every byte value. A name is refused with a
// typed error before anything is created, or used exactly as given —
// never truncated by Postgres into another name.

var runeWidths = []string{"a", "é", "€", "😀"}

func textOfLen(r string, n int) string { return strings.Repeat(r, n/len(r)+1)[:n] }

func TestSweepMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)

	// CheckSchemaName over lengths 0..70 and every byte.
	for _, r := range runeWidths {
		for n := range 71 {
			name := textOfLen(r, n)
			err := migrations.CheckSchemaName(name)
			ok := n >= 1 && n <= 63 && r == "a"
			if ok != (err == nil) || err != nil && !errors.Is(err, migrations.ErrBadSchemaName) {
				t.Errorf("CheckSchemaName(%d bytes of %q): %v", n, r, err)
			}
		}
	}
	for b := range 256 {
		name := "s" + string([]byte{byte(b)}) + "z"
		err := migrations.CheckSchemaName(name)
		ok := b == '_' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
		if ok != (err == nil) || err != nil && !errors.Is(err, migrations.ErrBadSchemaName) {
			t.Errorf("CheckSchemaName(%q): %v", name, err)
		}
	}

	// Apply at the limit and past it: 63 bytes is created under exactly
	// that name, 64 creates nothing.
	schemas := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1 || '%'`, db.Schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, n := range []int{62, 63, 64, 65, 100} {
		name := db.Schema + strings.Repeat("x", n-len(db.Schema))
		t.Cleanup(func() { _, _ = db.Pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`) })
		before := schemas()
		err := migrations.Apply(ctx, db.Pool, name)
		if n > 63 {
			if !errors.Is(err, migrations.ErrBadSchemaName) || schemas() != before {
				t.Errorf("Apply(%d bytes): %v, schemas %d then %d", n, err, before, schemas())
			}
			continue
		}
		var found bool
		if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&found); err != nil || !found {
			t.Errorf("Apply(%d bytes): schema %q not created under its name: %v", n, name, err)
		}
	}
	for _, name := range []string{"", "a\x00", "\xff", `a"b`, "a;b", "A", "1a", "strata\n"} {
		before := schemas()
		err := migrations.Apply(ctx, db.Pool, name)
		if name == "" {
			continue // the default schema
		}
		if !errors.Is(err, migrations.ErrBadSchemaName) || schemas() != before {
			t.Errorf("Apply(%q): %v", name, err)
		}
		if err := migrations.GrantApplication(ctx, db.Pool, name, "r"); !errors.Is(err, migrations.ErrBadSchemaName) {
			t.Errorf("GrantApplication(schema %q): %v", name, err)
		}
	}

	// GrantApplication: role names of every length and byte. A role name
	// longer than Postgres' 63 bytes would be truncated into the name of
	// another role (which would get the grants); a NUL would be dropped.
	schema := db.Schema + "_g"
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	if err := migrations.Apply(ctx, db.Pool, schema); err != nil {
		t.Fatal(err)
	}
	role63 := schema + "_" + strings.Repeat("r", 63-len(schema)-1)
	prefix := schema + "_r"
	t.Cleanup(func() {
		rows, _ := db.Pool.Query(ctx, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, prefix)
		roles, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, r := range roles {
			_, _ = db.Pool.Exec(ctx, `DROP OWNED BY `+pgx.Identifier{r}.Sanitize())
			_, _ = db.Pool.Exec(ctx, `DROP ROLE `+pgx.Identifier{r}.Sanitize())
		}
	})
	grants := func(role string) int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1 AND table_schema = $2`, role, schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	roleRows := []string{"", "a\x00b", "\xff", role63 + "x", role63 + "€", role63 + strings.Repeat("x", 100)}
	for _, r := range runeWidths {
		for n := 55; n <= 70; n++ {
			roleRows = append(roleRows, prefix+textOfLen(r, n-len(prefix)))
		}
	}
	// Every byte that is not a letter or digit (those are as plain as
	// "a"): NUL and lone high bytes are refused, control bytes, quotes and
	// the like are names like any other.
	for b := range 256 {
		if b >= '0' && b <= '9' || b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' {
			continue
		}
		roleRows = append(roleRows, prefix+string([]byte{byte(b)}))
	}
	roleRows = append(roleRows, role63)
	// Roles that exist under every valid name (and the 63-byte prefix of
	// the longer ones): the grants must go to the named one or nowhere.
	for _, role := range roleRows {
		if len(role) > 0 && len(role) <= 63 && validIdent(role) {
			if _, err := db.Pool.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()); err != nil {
				t.Fatalf("create role %q: %v", role, err)
			}
		}
	}
	for _, role := range roleRows {
		err := migrations.GrantApplication(ctx, db.Pool, schema, role)
		if len(role) > 0 && len(role) <= 63 && validIdent(role) {
			if err != nil || grants(role) == 0 {
				t.Errorf("GrantApplication(role %q): %v, %d grants", role, err, grants(role))
			}
			continue
		}
		if !errors.Is(err, migrations.ErrBadRoleName) {
			t.Errorf("GrantApplication(role %q): got %v, want ErrBadRoleName", role, err)
		}
	}
	// A longer name must not reach role63, the name Postgres would
	// truncate it to.
	if _, err := db.Pool.Exec(ctx, `REVOKE ALL ON ALL TABLES IN SCHEMA `+pgx.Identifier{schema}.Sanitize()+` FROM `+pgx.Identifier{role63}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	for _, long := range []string{role63 + "x", role63 + strings.Repeat("y", 100)} {
		_ = migrations.GrantApplication(ctx, db.Pool, schema, long)
		if n := grants(role63); n != 0 {
			t.Errorf("GrantApplication(role of %d bytes) granted %d privileges to %q, its first 63 bytes", len(long), n, role63)
		}
	}
}

// validIdent reports whether s can be a Postgres role name as given.
func validIdent(s string) bool {
	return !strings.ContainsRune(s, 0) && strings.ToValidUTF8(s, "\uFFFD") == s
}

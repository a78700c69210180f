// Package migrations creates and upgrades Strata's tables in a Postgres
// schema of your choice.
//
// The DDL lives in ordered, embedded .sql files (sql/0001_*.sql, …). Apply
// runs the ones a schema has not had yet, in one transaction, under an
// advisory lock, so it is safe to call from many processes at start-up and
// twice in a row. Strata never migrates implicitly: call Apply yourself (or
// run `strata migrate`).
//
// # Using your own migration tool
//
// The files use unqualified table names. To apply them with another tool,
// run each file in order with search_path set to your schema:
//
//	CREATE SCHEMA IF NOT EXISTS strata;
//	SET search_path TO strata;
//	\i 0001_event_store.sql
//
// Files lists them, and FS serves their contents.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed sql/*.sql
var files embed.FS

// FS holds the migration files under the directory "sql".
var FS fs.FS = files

// DefaultSchema is the schema Strata uses when none is configured.
const DefaultSchema = "strata"

// Migration is one embedded migration file.
type Migration struct {
	// Version is the file's number: 1 for 0001_event_store.sql.
	Version int
	// Name is the file's name.
	Name string
	// SQL is the file's contents.
	SQL string
}

// All returns the embedded migrations in the order they apply.
func All() ([]Migration, error) {
	entries, err := fs.ReadDir(files, "sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migrations: file %q does not start with a number and '_'", e.Name())
		}
		b, err := fs.ReadFile(files, path.Join("sql", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations: two files numbered %d", out[i].Version)
		}
	}
	return out, nil
}

// Apply creates schemaName if needed and applies, in order and in one
// transaction, every embedded migration it has not had yet, recording each
// in the table schema_migrations. It holds a transaction-scoped advisory
// lock keyed by the schema name, so concurrent callers wait for each other
// and the later ones find nothing to do. An empty schemaName means
// DefaultSchema.
func Apply(ctx context.Context, pool *pgxpool.Pool, schemaName string) error {
	if schemaName == "" {
		schemaName = DefaultSchema
	}
	if err := CheckSchemaName(schemaName); err != nil {
		return err
	}
	all, err := All()
	if err != nil {
		return err
	}
	ident := pgx.Identifier{schemaName}.Sanitize()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// One lock per schema name; hashtext keeps the key in Postgres so
		// every process derives the same one.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('strata.migrations.' || $1::text))`, schemaName); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		for _, m := range all {
			if slices.Contains(done, int32(m.Version)) {
				continue
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("record %s: %w", m.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrations: apply to schema %q: %w", schemaName, err)
	}
	return nil
}

// ErrBadSchemaName is returned for a schema name Strata will not use.
var ErrBadSchemaName = errors.New("migrations: bad schema name")

// ErrBadRoleName is returned for a role name Postgres would not take as
// given: empty, longer than 63 bytes (Postgres would truncate it to the
// name of another role), not valid UTF-8 or with a NUL byte.
var ErrBadRoleName = errors.New("migrations: bad role name")

func checkRoleName(role string) error {
	if len(role) == 0 || len(role) > 63 || !utf8.ValidString(role) || strings.IndexByte(role, 0) >= 0 {
		return fmt.Errorf("%w %q: want 1 to 63 bytes of UTF-8 without NUL", ErrBadRoleName, role)
	}
	return nil
}

// CheckSchemaName reports whether name is usable as Strata's schema: 1 to 63
// bytes of lower-case letters, digits and '_', not starting with a digit.
// (Names are quoted in SQL anyway; the rule keeps them free of surprises in
// psql and in LISTEN channel names.)
func CheckSchemaName(name string) error {
	if len(name) == 0 || len(name) > 63 {
		return fmt.Errorf("%w %q: want 1 to 63 bytes", ErrBadSchemaName, name)
	}
	for i, r := range name {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("%w %q: use lower-case letters, digits and '_', not starting with a digit", ErrBadSchemaName, name)
		}
	}
	return nil
}

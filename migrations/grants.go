package migrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// GrantApplication gives role the least privileges an application needs
// to run Strata in schemaName: append and read events, keep snapshots, run
// subscriptions (projections, relays, Pub/Sub consumers) and their dead
// letters. It grants no DDL, and neither UPDATE nor DELETE on events: the
// log is append-only for the application. Run it as the role that owns the
// schema, after Apply. The role must exist.
//
// The statements it runs are those of GrantStatements, for teams that
// manage grants themselves.
func GrantApplication(ctx context.Context, pool *pgxpool.Pool, schemaName, role string) error {
	if err := errors.Join(CheckSchemaName(schemaName), checkRoleName(role)); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, stmt := range GrantStatements(schemaName, role) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migrations: grant to %q: %s: %w", role, stmt, err)
			}
		}
		return nil
	})
}

// GrantStatements returns the statements of GrantApplication: read and
// write on every table of the schema, then UPDATE and DELETE taken back on
// the log (events) and on streams, and writes on schema_migrations.
func GrantStatements(schemaName, role string) []string {
	s := pgx.Identifier{schemaName}.Sanitize()
	r := pgx.Identifier{role}.Sanitize()
	return []string{
		`GRANT USAGE ON SCHEMA ` + s + ` TO ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ` + s + ` TO ` + r,
		`GRANT USAGE ON ALL SEQUENCES IN SCHEMA ` + s + ` TO ` + r,
		// The log is append-only; a stream's version only moves forward
		// through appends (UPDATE of its row) and is never deleted.
		`REVOKE UPDATE, DELETE, TRUNCATE ON ` + s + `.events FROM ` + r,
		`REVOKE DELETE, TRUNCATE ON ` + s + `.streams FROM ` + r,
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ` + s + `.schema_migrations FROM ` + r,
	}
}

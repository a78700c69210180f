package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// FindText scans every table of schemaName for texts: the tables are
// listed from pg_class (every table, whoever made it: Strata's, a read
// model's), and each row is cast to text whole (all of its columns), and
// each bytea column (a snapshot's data, whose text form is hex) is
// searched for the text's UTF-8 bytes. It returns the tables it scanned
// and one "table: text" hit per table and text found.
func FindText(tb testing.TB, pool *pgxpool.Pool, schemaName string, texts []string) (tables, hits []string) {
	tb.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm') ORDER BY 1`, schemaName)
	if err != nil {
		tb.Fatal(err)
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		tb.Fatal(err)
	}
	for _, table := range tables {
		q := `SELECT count(*) FROM ` + pgx.Identifier{schemaName, table}.Sanitize() + ` t WHERE strpos(t::text, $1) > 0`
		rows, err := pool.Query(ctx, `SELECT a.attname FROM pg_attribute a
			WHERE a.attrelid = $1::regclass AND a.atttypid = 'bytea'::regtype AND a.attnum > 0 AND NOT a.attisdropped`,
			pgx.Identifier{schemaName, table}.Sanitize())
		if err != nil {
			tb.Fatal(err)
		}
		binary, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			tb.Fatal(err)
		}
		for _, col := range binary {
			q += ` OR position(convert_to($1, 'UTF8') IN t.` + pgx.Identifier{col}.Sanitize() + `) > 0`
		}
		for _, s := range texts {
			var n int
			if err := pool.QueryRow(ctx, q, s).Scan(&n); err != nil {
				tb.Fatal(err)
			}
			if n > 0 {
				hits = append(hits, table+": "+s)
			}
		}
	}
	return tables, hits
}

package eventstore

import (
	"context"
	"strings"
	"testing"

	"github.com/strata-go/strata/internal/pgtest"
)

// TestRestoreNamesEveryStoredColumn: Restore moves archived events back
// by a list of columns (a generated column may not be written), so a
// column added to the events table must be added to it: every column of
// events that Postgres does not compute is in restoreSQL, and none it
// computes.
func TestRestoreNamesEveryStoredColumn(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(context.Background(), `SELECT column_name, is_generated = 'ALWAYS'
		FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'events'`, db.Schema)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var name string
		var generated bool
		if err := rows.Scan(&name, &generated); err != nil {
			t.Fatal(err)
		}
		n++
		named := strings.Contains(restoreSQL, "(m.event)."+name+",") || strings.Contains(restoreSQL, "(m.event)."+name+"\n")
		if named == generated {
			t.Errorf("column %s (generated: %v) is named in restoreSQL: %v", name, generated, named)
		}
	}
	if err := rows.Err(); err != nil || n == 0 {
		t.Fatalf("%d columns, %v", n, err)
	}
}

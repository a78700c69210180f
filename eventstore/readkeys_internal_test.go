package eventstore

import (
	"cmp"
	"context"
	"strings"
	"testing"

	"github.com/strata-go/strata/internal/pgtest"
)

// TestFilteredReadPlansWalkTheKeys: the filtered reads' statements are
// planned as the index walks their comments promise — an index-only scan
// of the category index or of the log index from the checkpoint, the table
// visited by primary key for the keys kept, and neither a sequential scan
// nor a sort of the events — with the values bound (the first executions'
// custom plans) and with them unknown (the generic plan a prepared
// statement may switch to). Without the key indexes of 0065 the walks are
// plain scans that visit the table for every entry.
func TestFilteredReadPlansWalkTheKeys(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	s := New(db.Pool, &Config{Schema: db.Schema})
	// 20,000 events in 20 transactions, 1% of them in category "rare".
	for tx := range 20 {
		if _, err := db.Pool.Exec(ctx, s.sql.expand.Replace(`INSERT INTO {schema}.events
			(event_id, stream_id, version, category, event_type, schema_version, data)
			SELECT gen_random_uuid(), c || '-' || (g % 97), g, c, 'T' || (g % 5), 1, '{}'
			FROM generate_series($1::bigint, $1::bigint + 999) g,
			     LATERAL (SELECT CASE WHEN g % 100 = 0 THEN 'rare' ELSE 'busy' END AS c) cat`), tx*1000+1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, s.sql.expand.Replace(`VACUUM ANALYZE {schema}.events`)); err != nil {
		t.Fatal(err)
	}
	const rowTypes = `bigint, bigint, integer, integer, text[], bigint, bigint`
	const rowArgs = `0, 0, 500, 500, NULL, 4, 1`
	const typedArgs = `0, 0, 500, 4000, ARRAY['T1'], 4, 1`
	const windowTypes = `bigint, bigint, integer, bigint, bigint`
	const ios, scan = "Index Only Scan using ", "Index Scan using "
	cases := []struct {
		name, sql, types, args, walk string
		lookup                       bool   // the kept keys are looked up by position
		set                          string // run before, as the read does
	}{
		{"category", s.sql.keys.category, `bigint, bigint, integer, text`, `0, 0, 500, 'rare'`, scan + "events_category_log_idx", false, ""},
		{"partition", s.sql.keys.partition, `bigint, bigint, integer, bigint, bigint`, `0, 0, 500, 4, 1`, scan + "events_log_idx", false, ""},
		{"partition keys", s.sql.keys.keys, rowTypes, rowArgs, ios + "events_log_idx", true, ""},
		{"partition and types", s.sql.keys.keys, rowTypes, typedArgs, ios + "events_log_idx", true, ""},
		{"category keys", s.sql.keys.categoryKeys, rowTypes + `, text[]`, `0, 0, 500, 500, NULL, 1, 0, ARRAY['rare']`, ios + "events_category_log_idx", true, ""},
		{"categories, partition and types", s.sql.keys.categoryKeys, rowTypes + `, text[]`, `0, 0, 500, 4000, ARRAY['T1'], 4, 1, ARRAY['busy', 'rare']`, ios + "events_category_log_idx", true, ""},
		{"window", s.sql.keys.window, windowTypes, `0, 0, 4000, 4, 1`, ios + "events_log_idx", false, ""},
		{"category window", s.sql.keys.categoryWindow, windowTypes + `, text[]`, `0, 0, 4000, 4, 1, ARRAY['busy', 'rare']`, ios + "events_category_log_idx", false, ""},
		{"head", s.sql.keys.head, ``, ``, "Index Only Scan Backward using events_log_idx", false, ""},
	}
	for _, c := range cases {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				conn, err := db.Pool.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Release()
				for _, q := range []string{`SET plan_cache_mode = ` + mode, cmp.Or(strings.Replace(c.set, "LOCAL ", "", 1), `SELECT`),
					`PREPARE plan_q` + parens(c.types) + ` AS ` + c.sql} {
					if _, err := conn.Exec(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				defer conn.Exec(ctx, `DEALLOCATE plan_q; RESET ALL`) //nolint:errcheck
				rows, err := conn.Query(ctx, `EXPLAIN EXECUTE plan_q`+parens(c.args))
				if err != nil {
					t.Fatal(err)
				}
				var plan strings.Builder
				for rows.Next() {
					var line string
					if err := rows.Scan(&line); err != nil {
						t.Fatal(err)
					}
					plan.WriteString(line + "\n")
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				p := plan.String()
				if !strings.Contains(p, c.walk) {
					t.Errorf("does not walk %q:\n%s", c.walk, p)
				}
				if strings.Contains(p, "Seq Scan on events") || strings.Contains(p, "Bitmap") || strings.Contains(p, "Hash") {
					t.Errorf("scans the events table:\n%s", p)
				}
				if c.lookup && !strings.Contains(p, "Index Scan using events_pkey") {
					t.Errorf("does not look the kept keys up by position:\n%s", p)
				}
				// The rows come out in the walk's order, never sorted: only
				// the merge of categories' walks and the window's last key
				// sort keys, at most a window of them.
				lines := strings.Split(p, "\n")
				if c.lookup && (len(lines) < 2 || !strings.HasPrefix(lines[0], "Limit") || !strings.Contains(lines[1], "->  Nested Loop")) {
					t.Errorf("sorts the events or joins otherwise:\n%s", p)
				}
				if !c.lookup && !strings.Contains(c.name, "window") && strings.Contains(p, "Sort") {
					t.Errorf("sorts the events:\n%s", p)
				}
			})
		}
	}
}

// parens is list in parentheses, or nothing when list is empty.
func parens(list string) string {
	if list == "" {
		return ""
	}
	return "(" + list + ")"
}

package eventstore

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The append statements are generated (appendsql.go): every variant is
// printed to testdata/append_sql.golden, for the schema "strata", so that
// a reviewer reads each statement whole and a change to the generator shows
// as a diff. go test -run TestAppendSQLGolden -update ./eventstore/
// rewrites the file.
func TestAppendSQLGolden(t *testing.T) {
	s := New(nil, nil)
	var b bytes.Buffer
	b.WriteString("-- The append statements of a Store with Config.Schema \"strata\", one per\n-- appendShape, then the combined statement (appendsql.go). Rewrite with: go test -run TestAppendSQLGolden -update ./eventstore/\n")
	for _, kind := range []expectKind{expectAny, expectNone, expectExists, expectExactly} {
		for _, multi := range []bool{false, true} {
			for _, lock := range []bool{false, true} {
				for _, notify := range []bool{false, true} {
					shape := appendShape{kind: kind, multi: multi, notify: notify, lock: lock}
					q, ok := s.sql.append[shape]
					if !ok {
						t.Fatalf("no statement for %+v", shape)
					}
					fmt.Fprintf(&b, "\n-- expect=%s multi=%t lock=%t notify=%t\n%s;\n", kind, multi, lock, notify, q)
				}
			}
		}
	}
	for i, q := range s.sql.appendBatch {
		fmt.Fprintf(&b, "\n-- combined (appendBatchSQL) notify=%t\n%s;\n", i == 1, q)
	}
	if len(s.sql.append) != 32 {
		t.Fatalf("%d append statements, want 32", len(s.sql.append))
	}
	const golden = "testdata/append_sql.golden"
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("the append statements differ from %s (rerun with -update and review the diff):\n%s", golden, b.Bytes())
	}
}

func (k expectKind) String() string {
	return [...]string{expectAny: "any", expectNone: "none", expectExists: "exists", expectExactly: "exactly"}[k]
}

package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
)

// stream tombstone|archive|restore|truncate|retirement, and status's line
// on retired streams.
func TestStreamRetirementCommands(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	for _, id := range []string{"acct-1", "acct-2", "acct-3"} {
		for range 3 {
			if _, err := d.store.Append(ctx, id, eventstore.Any, eventstore.NewEvent{Type: "Tick", Data: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := d.store.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "acct-3", Version: 2, SchemaVersion: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"stream", "tombstone", "acct-1"}, 0, "tombstoned"},
		{[]string{"stream", "archive", "acct-2"}, 0, "archived"},
		{[]string{"stream", "truncate", "acct-3", "3"}, 0, "truncated before version 3"},
		{[]string{"stream", "truncate", "acct-3", "x"}, 2, ""},
		{[]string{"stream", "tombstone", "nope"}, 4, ""},
		{[]string{"status"}, 0, "Retired streams: 1 tombstoned, 1 archived (3 events), 1 truncated"},
		{[]string{"stream", "restore", "acct-2"}, 0, "version 3, live"},
		{[]string{"stream", "retirement", "acct-1"}, 0, "tombstoned"},
	} {
		r := d.embedded(cli.Config{}, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout, c.out) {
			t.Fatalf("strata %s: exit %d, want %d and %q in:\n%s", strings.Join(c.args, " "), r.code, c.code, c.out, r)
		}
	}
}

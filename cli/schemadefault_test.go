package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
)

// TestEmbeddedSchemaFromRunner: a CLI handed the pool and the runner, and
// no --schema, works on the runner's store's schema, not on "strata".
func TestEmbeddedSchemaFromRunner(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.store.Append(ctx, "acct-1", eventstore.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	runner := projection.NewRunner(d.store, []projection.Projection{{Name: "balances",
		Handler: projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })}}, nil)
	var out, errb bytes.Buffer
	c := cli.New(&cli.Config{Pool: d.db.Pool, Projections: runner, Stdout: &out, Stderr: &errb})
	if code := c.Run(ctx, []string{"status", "--json"}); code != cli.ExitOK {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	var rep struct {
		Schema  string `json:"schema"`
		Streams int64  `json:"streams"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Schema != d.db.Schema || rep.Streams != 1 {
		t.Fatalf("status of schema %q with %d streams, want %q with 1", rep.Schema, rep.Streams, d.db.Schema)
	}
	out.Reset()
	errb.Reset()
	// An explicit Config.Schema still wins.
	c = cli.New(&cli.Config{Pool: d.db.Pool, Projections: runner, Schema: "no_such_schema", Stdout: &out, Stderr: &errb})
	if code := c.Run(ctx, []string{"status"}); code == cli.ExitOK {
		t.Fatalf("status on a missing schema passed: %s", out.String())
	}
}

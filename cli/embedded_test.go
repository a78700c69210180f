package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
)

// embedded runs an in-process CLI built from cfg on the test's schema.
func (d *tdb) embedded(cfg cli.Config, args ...string) result {
	d.t.Helper()
	var out, errb bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &errb
	cfg.Getenv = func(string) string { return "" }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.New(&cfg).Run(ctx, append([]string{"--database-url", d.url, "--schema", d.db.Schema}, args...))
	r := result{stdout: out.String(), stderr: errb.String(), code: code}
	if strings.Contains(r.stdout+r.stderr, d.secret) {
		d.t.Fatalf("embedded CLI printed the password:\n%s", r)
	}
	return r
}

// OrderPlaced is version 2 of the event: v1 had "amount" in units.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"cents"`
}

var (
	orderPlacedV1 = []byte(`{"type":"object","required":["order_id","amount"],
		"properties":{"order_id":{"type":"string"},"amount":{"type":"number"}}}`)
	orderPlacedV2 = []byte(`{"type":"object","required":["order_id","cents"],
		"properties":{"order_id":{"type":"string"},"cents":{"type":"integer"}}}`)
)

func orderRegistry(t *testing.T) *schema.Registry {
	t.Helper()
	reg := schema.NewRegistry()
	for _, err := range []error{
		schema.Register[OrderPlaced](reg, "OrderPlaced", 2, orderPlacedV2),
		reg.RegisterVersion("OrderPlaced", 1, orderPlacedV1),
		reg.Upcast("OrderPlaced", 1, func(doc map[string]any) (map[string]any, error) {
			amount, err := doc["amount"].(json.Number).Float64()
			if err != nil {
				return nil, err
			}
			delete(doc, "amount")
			doc["cents"] = int64(amount * 100)
			return doc, nil
		}),
		reg.Sample(OrderPlaced{OrderID: "o-1", Cents: 100}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

func TestEmbeddedSchemaCheck(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	reg := orderRegistry(t)
	v1 := ev("OrderPlaced", `{"order_id":"o-1","amount":2.5}`)
	v1.SchemaVersion = 1
	v2 := ev("OrderPlaced", `{"order_id":"o-2","cents":99}`)
	v2.SchemaVersion = 2
	d.append("order-1", v1)
	d.append("order-2", v2)
	// Stored by a writer without the registry: a v2 without cents, and a
	// type the registry does not know.
	bad := ev("OrderPlaced", `{"order_id":"o-3"}`)
	bad.SchemaVersion = 2
	d.append("legacy-3", bad, ev("Mystery", `{}`))

	cfg := cli.Config{Registry: reg}
	// Gap-safe reads see all four once no older transaction is open.
	r := d.pollEmbedded("all four events checked", cfg, func(r result) bool { return strings.Contains(r.stdout, "Events: 4 checked") },
		"schema", "check")
	want(t, r, cli.ExitProblems)
	for _, s := range []string{"Registry: consistent.", "Events: 4 checked, 2 do not decode", "legacy-3@1  OrderPlaced v2", "cents",
		"legacy-3@2  Mystery v1"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("schema check lacks %q:\n%s", s, r)
		}
	}
	if !strings.Contains(r.stderr, "schema check failed: 0 registry errors, 2 of 4 events do not decode") {
		t.Fatalf("schema check stderr:\n%s", r)
	}
	var rep struct {
		Registry []string `json:"registry_errors"`
		Checked  int      `json:"events_checked"`
		Failed   int      `json:"events_failed"`
		Failures []struct {
			StreamID string `json:"stream_id"`
			Type     string `json:"type"`
			Error    string `json:"error"`
		} `json:"failures"`
	}
	r = want(t, d.embedded(cfg, "--json", "schema", "check", "--max-failures", "1"), cli.ExitProblems)
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Checked != 4 || rep.Failed != 2 || len(rep.Failures) != 1 ||
		rep.Failures[0].StreamID != "legacy-3" || len(rep.Registry) != 0 {
		t.Fatalf("schema check --json: %v\n%s", err, r)
	}
	// The upcast v1 and the current v2 decode: only orders, all is well.
	r = want(t, d.embedded(cfg, "schema", "check", "--category", "order"), cli.ExitOK)
	if !strings.Contains(r.stdout, "Events: 2 checked, 0 do not decode") {
		t.Fatalf("schema check of orders:\n%s", r)
	}
	// A registry with a schema but no Go type is inconsistent.
	if err := reg.RegisterVersion("Orphan", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	r = want(t, d.embedded(cfg, "schema", "check", "--category", "order"), cli.ExitProblems)
	if !strings.Contains(r.stdout, "Registry: 1 error") || !strings.Contains(r.stdout, `"Orphan" has schemas`) {
		t.Fatalf("schema check of an inconsistent registry:\n%s", r)
	}
}

// pollEmbedded reruns an embedded command until check accepts its result.
func (d *tdb) pollEmbedded(what string, cfg cli.Config, check func(result) bool, args ...string) result {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := d.embedded(cfg, args...)
		if check(r) {
			return r
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out waiting for %s; last run of %v:\n%s", what, args, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ordersProjection counts events per stream in a table of the test's
// schema.
func ordersProjection(t *testing.T, d *tdb) (projection.Projection, func() int64) {
	t.Helper()
	table := pgx.Identifier{d.db.Schema, "order_counts"}.Sanitize()
	if _, err := d.db.Pool.Exec(context.Background(), `CREATE TABLE `+table+` (stream_id text PRIMARY KEY, n bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	p := projection.Projection{
		Name: "orders",
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			_, err := tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1, 1) ON CONFLICT (stream_id) DO UPDATE SET n = `+table+`.n + 1`, e.StreamID)
			return err
		}),
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `TRUNCATE `+table)
			return err
		},
	}
	total := func() int64 {
		var n int64
		if err := d.db.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(n), 0) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return p, total
}

func TestEmbeddedProjectionRebuildAndReset(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	for i := range 30 {
		evs := make([]eventstore.NewEvent, 100)
		for k := range evs {
			evs[k] = ev("OrderPlaced", fmt.Sprintf(`{"n":%d}`, i*100+k))
		}
		d.append(fmt.Sprintf("order-%d", i%7), evs...)
	}
	p, total := ordersProjection(t, d)
	runner := projection.NewRunner(d.store, []projection.Projection{p}, nil)
	cfg := cli.Config{Projections: runner}

	// Rebuild replays every event into the read model, with a progress
	// bar (count, rate, time) on stderr and a summary on stdout.
	r := want(t, d.embedded(cfg, "projection", "rebuild", "orders"), cli.ExitOK)
	t.Logf("rebuild output:\n%s", r)
	if !strings.Contains(r.stdout, "rebuilt orders: ") || !strings.Contains(r.stderr, "rebuild orders") || !strings.Contains(r.stderr, "events/s") {
		t.Fatalf("rebuild:\n%s", r)
	}
	// It replays what was readable when it began; wait for all 3,000 in
	// case another transaction on the server held some back.
	pgtest.WaitFor(t, "3000 events in the read model", 30*time.Second, func() bool {
		if total() == 3000 {
			return true
		}
		want(t, d.embedded(cfg, "projection", "rebuild", "orders"), cli.ExitOK)
		return false
	})
	r = want(t, d.embedded(cfg, "--json", "projection", "rebuild", "orders"), cli.ExitOK)
	var rb struct {
		Name   string  `json:"name"`
		Events int64   `json:"events"`
		Rate   float64 `json:"events_per_second"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rb); err != nil || rb.Name != "orders" || rb.Events != 3000 || total() != 3000 {
		t.Fatalf("rebuild --json: %v (read model %d)\n%s", err, total(), r)
	}

	// Reset to the start clears the read model in the checkpoint's
	// transaction (the projection's Reset).
	r = want(t, d.embedded(cfg, "projection", "reset", "orders", "--to", "0"), cli.ExitOK)
	if strings.Contains(r.stdout, "left as it is") || total() != 0 {
		t.Fatalf("reset to 0: read model %d\n%s", total(), r)
	}
	st, err := d.store.SubscriptionStatuses(ctx, projection.SubscriptionName("orders", 1))
	if err != nil || len(st) != 1 || !st[0].Checkpoint.IsZero() || st[0].Lag != 3000 {
		t.Fatalf("after reset: %+v, %v", st, err)
	}
	// A name the runner does not know is reset as a plain subscription;
	// one nobody knows is not found; rebuild of it neither.
	sub, err := d.store.Subscription(eventstore.SubscriptionConfig{Name: "relay"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Register(ctx); err != nil {
		t.Fatal(err)
	}
	r = want(t, d.embedded(cfg, "projection", "reset", "relay", "--to", "0"), cli.ExitOK)
	if !strings.Contains(r.stdout, "relay reset to 0/0") {
		t.Fatalf("reset of a subscription:\n%s", r)
	}
	want(t, d.embedded(cfg, "projection", "reset", "nobody", "--to", "0"), cli.ExitNotFound)
	want(t, d.embedded(cfg, "projection", "rebuild", "nobody"), cli.ExitNotFound)
}

// The CLI as a subcommand of a service's own cobra command tree.
func TestEmbeddedAsSubcommand(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	d.append("order-1", ev("OrderPlaced", `{}`))
	var out bytes.Buffer
	service := &cobra.Command{Use: "shop", SilenceErrors: true, SilenceUsage: true}
	admin := cli.New(&cli.Config{Name: "admin", Stdout: &out, Getenv: func(string) string { return d.url }, Schema: d.db.Schema}).Command()
	service.AddCommand(admin)
	service.SetOut(&out)
	service.SetArgs([]string{"admin", "stream", "show", "order-1"})
	if err := service.Execute(); err != nil || !strings.Contains(out.String(), "Stream order-1: 1 event") {
		t.Fatalf("shop admin stream show: %v\n%s", err, out.String())
	}
	service.SetArgs([]string{"admin", "stream", "show", "order-2"})
	if err := service.Execute(); cli.ExitCode(err) != cli.ExitNotFound {
		t.Fatalf("unknown stream: %v (exit %d)", err, cli.ExitCode(err))
	}
	service.SetArgs([]string{"admin", "status", "--nope"})
	if err := service.Execute(); cli.ExitCode(err) != cli.ExitUsage {
		t.Fatalf("bad flag: %v (exit %d)", err, cli.ExitCode(err))
	}
	if strings.Contains(out.String(), d.secret) {
		t.Fatalf("printed the password:\n%s", out.String())
	}
	// The embedding program prints the errors itself: their text is masked
	// too, also for a connection string given without its flag.
	for _, args := range [][]string{
		{"admin", "status", "postgres://u:hunter2leak@127.0.0.1:1/x"},
		{"admin", "postgres://u:hunter2leak@127.0.0.1:1/x"},
		{"admin", "--database-url", "postgres://u:hunter2leak@127.0.0.1:1/x", "status"},
	} {
		service.SetArgs(args)
		err := service.Execute()
		if err == nil || strings.Contains(err.Error(), "hunter2leak") {
			t.Fatalf("%v: error %v", args, err)
		}
	}
}

// batchCounts is a set-based projection handler: one upsert per batch.
type batchCounts struct{ table string }

func (b batchCounts) Handle(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	return b.HandleBatch(ctx, tx, []eventstore.Event{e})
}

func (b batchCounts) HandleBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.StreamID
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+b.table+` (stream_id, n)
		SELECT id, count(*) FROM unnest($1::text[]) AS id GROUP BY id
		ON CONFLICT (stream_id) DO UPDATE SET n = `+b.table+`.n + EXCLUDED.n`, ids)
	return err
}

// `projection rebuild` shows its progress to the end and leaves the read
// model equal to the one built live before: on 20,000 events, and on
// 100,000 (about 20 s on a loaded machine) with STRATA_FAULT_TESTS=1.
func TestEmbeddedRebuildLarge(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	n := 20_000
	if os.Getenv("STRATA_FAULT_TESTS") == "1" {
		n = 100_000
	}
	for done := 0; done < n; done += 1000 {
		err := pgx.BeginFunc(ctx, d.db.Pool, func(tx pgx.Tx) error {
			for k := range 10 {
				evs := make([]eventstore.NewEvent, 100)
				for i := range evs {
					evs[i] = ev("OrderPlaced", fmt.Sprintf(`{"n":%d}`, done+k*100+i))
				}
				if _, err := d.store.AppendTx(ctx, tx, fmt.Sprintf("order-%d", (done/1000+k)%97), eventstore.Any, evs...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	table := pgx.Identifier{d.db.Schema, "order_counts"}.Sanitize()
	if _, err := d.db.Pool.Exec(ctx, `CREATE TABLE `+table+` (stream_id text PRIMARY KEY, n bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	p := projection.Projection{Name: "orders", Handler: batchCounts{table}, Reset: func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `TRUNCATE `+table)
		return err
	}}
	runner := projection.NewRunner(d.store, []projection.Projection{p}, nil)
	digest := func() (string, int64) {
		var sum string
		var total int64
		if err := d.db.Pool.QueryRow(ctx, `SELECT coalesce(md5(string_agg(stream_id || '=' || n, ',' ORDER BY stream_id)), ''), coalesce(sum(n), 0) FROM `+table).Scan(&sum, &total); err != nil {
			t.Fatal(err)
		}
		return sum, total
	}
	// Built live first, by the runner.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	pgtest.WaitFor(t, "the live read model to hold every event", 30*time.Second, func() bool { _, total := digest(); return total == int64(n) })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	before, _ := digest()

	// Baseline: the same rebuild called directly, without the CLI and its
	// progress bar.
	started := time.Now()
	if err := runner.Rebuild(ctx, "orders", nil); err != nil {
		t.Fatal(err)
	}
	direct := time.Since(started)
	if after, _ := digest(); after != before {
		t.Fatalf("read model after a direct rebuild differs")
	}

	started = time.Now()
	r := want(t, d.embedded(cli.Config{Projections: runner}, "projection", "rebuild", "orders"), cli.ExitOK)
	viaCLI := time.Since(started)
	t.Logf("rebuild of %d events: CLI %s (%.0f events/s), direct Runner.Rebuild %s (%.0f events/s): %.2f x_baseline\n%s",
		n, viaCLI.Round(time.Millisecond), float64(n)/viaCLI.Seconds(), direct.Round(time.Millisecond), float64(n)/direct.Seconds(),
		viaCLI.Seconds()/direct.Seconds(), r.stdout)
	if !strings.Contains(r.stderr, "100%") || !strings.Contains(r.stderr, fmt.Sprintf("(%d/%d", n, n)) || !strings.Contains(r.stdout, fmt.Sprintf("rebuilt orders: %d events", n)) {
		t.Fatalf("rebuild output:\n%s", r)
	}
	if after, total := digest(); after != before || total != int64(n) {
		t.Fatalf("read model after rebuild: %s (%d events), before: %s", after, total, before)
	}
}

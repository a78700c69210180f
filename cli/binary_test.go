package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// binary is the strata command, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-o", binary, "github.com/strata-go/strata/cmd/strata")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build strata:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// What goleak.VerifyTestMain does, after the clean-up above.
		if err := goleak.Find(pgtest.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: goroutines left running after the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// password is put into the connection string of every run: the local
// server's trust authentication ignores it, and it must never be printed.
const password = "s3cretpw"

// secretURL returns the test server's URL with a password in it (unless it
// has one already, which must not be printed either).
func secretURL(t *testing.T, db *pgtest.DB) (string, string) {
	t.Helper()
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	if pw, ok := u.User.Password(); ok {
		return db.URL, pw
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), password
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// cmdEnv is the environment of a run: no DATABASE_URL unless given.
func cmdEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// run runs the binary with exactly args and env, and checks that no
// secret appears in what it printed.
func run(t *testing.T, env []string, secrets []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run strata %v: %v", args, err)
	}
	for _, s := range secrets {
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			t.Fatalf("strata %v printed the password %q:\n%s", args, s, r)
		}
	}
	return r
}

// tdb is a fresh schema and the way to run strata on it.
type tdb struct {
	t      *testing.T
	db     *pgtest.DB
	store  *eventstore.Store
	url    string
	secret string
}

func newTDB(t *testing.T) *tdb {
	db := pgtest.New(t)
	u, pw := secretURL(t, db)
	return &tdb{t: t, db: db, store: eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema}), url: u, secret: pw}
}

// strata runs the binary on the test's schema.
func (d *tdb) strata(args ...string) result {
	d.t.Helper()
	return run(d.t, cmdEnv(), []string{d.secret}, append([]string{"--database-url", d.url, "--schema", d.db.Schema}, args...)...)
}

// want fails unless r exited with code.
func want(t *testing.T, r result, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
	return r
}

// eventually reruns a command until check accepts its result: gap-safe
// reads may lag behind any open transaction on the server.
func (d *tdb) eventually(what string, check func(result) bool, args ...string) result {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := d.strata(args...)
		if check(r) {
			return r
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out waiting for %s; last run of %v:\n%s", what, args, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *tdb) append(stream string, evs ...eventstore.NewEvent) eventstore.AppendResult {
	d.t.Helper()
	res, err := d.store.Append(context.Background(), stream, eventstore.Any, evs...)
	if err != nil {
		d.t.Fatal(err)
	}
	return res
}

func ev(typ, data string) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, Data: []byte(data)}
}

// statusJSON is what `status --json` prints.
type statusJSON struct {
	Schema        string `json:"schema"`
	Streams       int64  `json:"streams"`
	Events        int64  `json:"events"`
	Head          string `json:"head"`
	Subscriptions []struct {
		Name        string  `json:"name"`
		Partition   int     `json:"partition"`
		Partitions  int     `json:"partitions"`
		Checkpoint  string  `json:"checkpoint"`
		Lag         int64   `json:"lag"`
		LagSeconds  float64 `json:"lag_seconds"`
		State       string  `json:"state"`
		Owner       string  `json:"owner"`
		LastError   string  `json:"last_error"`
		DeadLetters int64   `json:"dead_letters"`
	} `json:"subscriptions"`
	Horizon  *json.RawMessage `json:"horizon"`
	Problems []string         `json:"problems"`
}

func parseStatus(t *testing.T, r result) statusJSON {
	t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json does not parse: %v\n%s", err, r)
	}
	return st
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	u, pw := secretURL(t, db)
	args := []string{"--database-url", u, "--schema", db.Schema}
	first := want(t, run(t, cmdEnv(), []string{pw}, append(args, "migrate")...), cli.ExitOK)
	second := want(t, run(t, cmdEnv(), []string{pw}, append(args, "migrate")...), cli.ExitOK)
	if !strings.Contains(first.stdout, db.Schema) || first.stdout != second.stdout {
		t.Fatalf("migrate output:\n%s\n%s", first, second)
	}
	// DATABASE_URL works as well as the flag, and the schema is usable.
	r := want(t, run(t, cmdEnv("DATABASE_URL="+u), []string{pw}, "--schema", db.Schema, "status"), cli.ExitOK)
	if !strings.Contains(r.stdout, "0 streams, 0 events") || !strings.Contains(r.stdout, "No subscriptions.") {
		t.Fatalf("status of an empty store:\n%s", r)
	}
	r = want(t, run(t, cmdEnv("DATABASE_URL="+u), []string{pw}, "--schema", db.Schema, "--json", "migrate"), cli.ExitOK)
	var m struct {
		Schema  string `json:"schema"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.Schema != db.Schema || m.Version < 3 {
		t.Fatalf("migrate --json: %v\n%s", err, r)
	}
}

// runSubscription runs an eventstore subscription in the background until
// the test ends (or stop is called).
func runSubscription(t *testing.T, store *eventstore.Store, cfg eventstore.SubscriptionConfig, h eventstore.Handler) (stop func()) {
	t.Helper()
	sub, err := store.Subscription(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, h) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("subscription %s: %v", cfg.Name, err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestStatus(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	for i := range 5 {
		d.append(fmt.Sprintf("order-%d", i%2), ev("OrderPlaced", `{}`))
	}
	// A projection that reads everything, then stops: it has a checkpoint
	// and, after three more appends, a lag of three.
	var handled atomic.Int64
	// Counted after each commit, so that stopping then keeps them all.
	stop := runSubscription(t, d.store, eventstore.SubscriptionConfig{Name: "projection:orders", PollInterval: 50 * time.Millisecond,
		OnBatch: func(b eventstore.BatchInfo) { handled.Add(int64(b.Events)) }},
		func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error { return nil })
	pgtest.WaitFor(t, "the subscription to handle 5 events", 30*time.Second, func() bool { return handled.Load() == 5 })
	stop()
	last := d.append("order-9", ev("OrderPlaced", `{}`), ev("OrderPaid", `{}`), ev("OrderShipped", `{}`))

	r := want(t, d.strata("status"), cli.ExitOK)
	for _, s := range []string{"3 streams, 8 events", "head " + last.Position.String(), "SUBSCRIPTION", "projection:orders", "LAG"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("status lacks %q:\n%s", s, r)
		}
	}
	st := parseStatus(t, want(t, d.strata("--json", "status"), cli.ExitOK))
	if st.Streams != 3 || st.Events != 8 || st.Head != last.Position.String() || len(st.Subscriptions) != 1 || len(st.Problems) != 0 {
		t.Fatalf("status --json: %+v", st)
	}
	s := st.Subscriptions[0]
	if s.Name != "projection:orders" || s.Lag != 3 || s.LagSeconds <= 0 || s.Partitions != 1 || s.DeadLetters != 0 || s.State != "stopped" {
		t.Fatalf("subscription: %+v", s)
	}
	// A lag beyond --max-lag is a problem for scripts; within it is not.
	want(t, d.strata("status", "--max-lag", "3"), cli.ExitOK)
	if r := want(t, d.strata("status", "--max-lag", "2"), cli.ExitProblems); !strings.Contains(r.stderr, "lags 3 events (more than 2)") {
		t.Fatalf("--max-lag 2:\n%s", r)
	}
	if r := want(t, d.strata("status", "--max-lag-time", "1ns"), cli.ExitProblems); !strings.Contains(r.stderr, "projection:orders partition 0 lags") {
		t.Fatalf("--max-lag-time:\n%s", r)
	}
	if _, err := eventstore.ParsePosition(s.Checkpoint); err != nil || s.Checkpoint == "0/0" {
		t.Fatalf("checkpoint %q: %v", s.Checkpoint, err)
	}

	// Running again, it catches up: lag 0, and the owner shows while it runs.
	runSubscription(t, d.store, eventstore.SubscriptionConfig{Name: "projection:orders", PollInterval: 50 * time.Millisecond, Owner: "test-owner"},
		func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error { return nil })
	d.eventually("lag 0", func(r result) bool {
		st := parseStatus(t, r)
		return r.code == 0 && len(st.Subscriptions) == 1 && st.Subscriptions[0].Lag == 0 && st.Subscriptions[0].Owner == "test-owner" &&
			st.Subscriptions[0].State == "running"
	}, "--json", "status")
}

func TestStreamShow(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	placed := ev("OrderPlaced", `{"total": 25,
		"sku": "tea"}`)
	placed.Metadata = eventstore.Metadata{CorrelationID: "req-7", CausationID: "cmd-1", Values: map[string]string{"user": "ada"}}
	paid := ev("OrderPaid", `{"amount":25}`)
	paid.SchemaVersion = 2
	d.append("order-1", placed, paid)
	d.append("order-2", ev("OrderPlaced", `{}`))

	r := want(t, d.strata("stream", "show", "order-1"), cli.ExitOK)
	for _, s := range []string{"Stream order-1: 2 events", "v1  OrderPlaced", "v2  OrderPaid/v2", "correlation req-7", "causation   cmd-1",
		"user: ada", `{"total":25,"sku":"tea"}`, `{"amount":25}`} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("stream show lacks %q:\n%s", s, r)
		}
	}
	if strings.Contains(r.stdout, "order-2") {
		t.Fatalf("stream show printed another stream:\n%s", r)
	}
	var js struct {
		StreamID string `json:"stream_id"`
		Events   []struct {
			Version       int64             `json:"version"`
			Type          string            `json:"type"`
			SchemaVersion int               `json:"schema_version"`
			Data          json.RawMessage   `json:"data"`
			CorrelationID string            `json:"correlation_id"`
			Metadata      map[string]string `json:"metadata"`
			Position      string            `json:"position"`
		} `json:"events"`
	}
	r = want(t, d.strata("--json", "stream", "show", "order-1"), cli.ExitOK)
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatalf("stream show --json: %v\n%s", err, r)
	}
	if js.StreamID != "order-1" || len(js.Events) != 2 || js.Events[1].SchemaVersion != 2 || js.Events[0].CorrelationID != "req-7" ||
		js.Events[0].Metadata["user"] != "ada" || !json.Valid(js.Events[0].Data) {
		t.Fatalf("stream show --json: %+v", js)
	}
	r = want(t, d.strata("stream", "show", "--from", "2", "order-1"), cli.ExitOK)
	if strings.Contains(r.stdout, "OrderPlaced") || !strings.Contains(r.stdout, "OrderPaid") {
		t.Fatalf("--from 2:\n%s", r)
	}
	r = want(t, d.strata("stream", "show", "order-404"), cli.ExitNotFound)
	if !strings.Contains(r.stderr, `stream "order-404" has no events`) {
		t.Fatalf("unknown stream:\n%s", r)
	}
}

// tailLines returns the JSON events printed by events tail --json.
func tailLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("tail --json line %q: %v", line, err)
		}
		evs = append(evs, m)
	}
	return evs
}

func TestEventsTail(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	for i := range 4 {
		d.append("order-1", ev("OrderPlaced", fmt.Sprintf(`{"n":%d}`, i)))
		d.append("payment-1", ev("PaymentCompleted", fmt.Sprintf(`{"n":%d}`, i)))
	}
	// Gap-safe reads show the events once no older transaction on the
	// server is open: wait until all eight are readable.
	d.eventually("eight readable events", func(r result) bool {
		return r.code == 0 && strings.Count(r.stdout, "\n") == 8
	}, "--json", "events", "tail", "-n", "100")
	// The last two order events, oldest first.
	r := want(t, d.strata("events", "tail", "-n", "2", "--category", "order"), cli.ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !strings.Contains(lines[0], `order-1@3  OrderPlaced  {"n":2}`) || !strings.Contains(lines[1], `order-1@4  OrderPlaced  {"n":3}`) {
		t.Fatalf("tail lines:\n%s", r)
	}
	evs := tailLines(t, want(t, d.strata("--json", "events", "tail", "--type", "PaymentCompleted", "-n", "10"), cli.ExitOK).stdout)
	if len(evs) != 4 || evs[0]["stream_id"] != "payment-1" || evs[3]["version"] != float64(4) {
		t.Fatalf("tail --json: %v", evs)
	}
	if evs := tailLines(t, want(t, d.strata("--json", "events", "tail"), cli.ExitOK).stdout); len(evs) != 8 {
		t.Fatalf("tail of everything: %d events", len(evs))
	}
	if r := want(t, d.strata("events", "tail", "-n", "0"), cli.ExitOK); r.stdout != "" {
		t.Fatalf("-n 0 printed:\n%s", r)
	}
	want(t, d.strata("events", "tail", "-n", "-1"), cli.ExitUsage)
}

func TestEventsTailFollow(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	d.append("order-1", ev("OrderPlaced", `{"n":0}`))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", d.url, "--schema", d.db.Schema, "--json",
		"events", "tail", "--follow", "--category", "order", "--poll", "20ms")
	cmd.Env = cmdEnv()
	var stderr lockedBuffer // read on a timeout while the process may still write
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) map[string]any {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tail ended before %s; stderr: %s", what, stderr.String())
			}
			if strings.Contains(l, d.secret) {
				t.Fatalf("tail printed the password: %s", l)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			return m
		case <-time.After(30 * time.Second):
			t.Fatalf("timed out waiting for %s; stderr: %s", what, stderr.String())
		}
		return nil
	}
	// The gap-safe start may not see the first event yet; it then comes
	// as a followed one. Either way it comes exactly once, first.
	if e := next("the existing event"); e["stream_id"] != "order-1" || e["version"] != float64(1) {
		t.Fatalf("first line: %v", e)
	}
	// Appended while following: the payment is filtered out, the orders
	// come in log order.
	d.append("payment-1", ev("PaymentCompleted", `{}`))
	d.append("order-2", ev("OrderPlaced", `{"n":1}`))
	d.append("order-1", ev("OrderPaid", `{"n":2}`))
	if e := next("order-2"); e["stream_id"] != "order-2" || e["type"] != "OrderPlaced" {
		t.Fatalf("second line: %v", e)
	}
	if e := next("order-1 v2"); e["stream_id"] != "order-1" || e["version"] != float64(2) || e["type"] != "OrderPaid" {
		t.Fatalf("third line: %v", e)
	}
	// Interrupted, it stops cleanly with exit 0.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		t.Fatalf("unexpected line after the last event: %s", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail --follow after SIGINT: %v; stderr: %s", err, stderr.String())
	}
}

func TestTrace(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	with := func(e eventstore.NewEvent, corr, cause string) eventstore.NewEvent {
		e.Metadata = eventstore.Metadata{CorrelationID: corr, CausationID: cause}
		return e
	}
	read := func(stream string) eventstore.Event {
		for e, err := range d.store.ReadStream(ctx, stream, 0) {
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		return eventstore.Event{}
	}
	// order → payment → notification, and order → stock reserved; the
	// order itself was caused by a command, not an event.
	d.append("order-42", with(ev("OrderPlaced", `{}`), "req-42", "cmd-place-42"))
	order := read("order-42")
	d.append("stock-7", with(ev("StockReserved", `{}`), "req-42", order.ID.String()))
	d.append("payment-42", with(ev("PaymentCompleted", `{}`), "req-42", order.ID.String()))
	payment := read("payment-42")
	d.append("notification-42", with(ev("ConfirmationSent", `{}`), "req-42", payment.ID.String()))
	d.append("order-43", with(ev("OrderPlaced", `{}`), "req-43", "cmd-place-43"))

	r := want(t, d.strata("trace", "req-42"), cli.ExitOK)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	wantPrefixes := []string{
		"Trace req-42: 4 events in 4 streams over ",
		"OrderPlaced  order-42@1  +0s (caused by cmd-place-42)",
		"├─ StockReserved  stock-7@1  +",
		"└─ PaymentCompleted  payment-42@1  +",
		"   └─ ConfirmationSent  notification-42@1  +",
	}
	if len(lines) != len(wantPrefixes) {
		t.Fatalf("trace:\n%s", r)
	}
	for i, p := range wantPrefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Fatalf("trace line %d is %q, want prefix %q:\n%s", i, lines[i], p, r)
		}
	}
	if !strings.Contains(lines[4], "after its cause)") {
		t.Fatalf("no timing against the cause: %q", lines[4])
	}

	r = want(t, d.strata("--json", "trace", "req-42"), cli.ExitOK)
	type node struct {
		Event struct {
			Type string `json:"type"`
		} `json:"event"`
		OffsetMS     float64  `json:"offset_ms"`
		AfterCauseMS *float64 `json:"after_cause_ms"`
		Caused       []node   `json:"caused"`
	}
	var tr struct {
		Events int    `json:"events"`
		Roots  []node `json:"roots"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &tr); err != nil {
		t.Fatalf("trace --json: %v\n%s", err, r)
	}
	if tr.Events != 4 || len(tr.Roots) != 1 || tr.Roots[0].Event.Type != "OrderPlaced" || len(tr.Roots[0].Caused) != 2 ||
		tr.Roots[0].Caused[1].Event.Type != "PaymentCompleted" || len(tr.Roots[0].Caused[1].Caused) != 1 ||
		tr.Roots[0].Caused[1].Caused[0].Event.Type != "ConfirmationSent" || tr.Roots[0].Caused[1].Caused[0].AfterCauseMS == nil ||
		*tr.Roots[0].Caused[1].Caused[0].AfterCauseMS < 0 {
		t.Fatalf("trace --json tree: %s", r.stdout)
	}
	want(t, d.strata("trace", "req-404"), cli.ExitNotFound)
	want(t, d.strata("trace"), cli.ExitUsage)

	// Two events naming each other as their cause: each is printed once,
	// the first as the root (internal/causaltree's contract).
	a, b := ev("Ping", `{}`), ev("Pong", `{}`)
	a.ID, b.ID = uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	d.append("cycle-1", with(a, "req-cycle", b.ID.String()), with(b, "req-cycle", a.ID.String()))
	r = want(t, d.strata("trace", "req-cycle"), cli.ExitOK)
	lines = strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "Ping  cycle-1@1  +0s (caused by ") || !strings.HasPrefix(lines[2], "└─ Pong  cycle-1@2  +") {
		t.Fatalf("trace of a causation cycle:\n%s", r)
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	want(t, d.strata("dead-letters", "list"), cli.ExitOK)
	d.append("order-1", ev("OrderPlaced", `{}`), ev("Poison", `{}`), ev("OrderPaid", `{}`))
	d.append("order-2", ev("OrderPlaced", `{}`))

	// A subscription whose handler fails on Poison until healed: Poison is
	// parked, and OrderPaid behind it (same stream); order-2 goes on.
	var healed atomic.Bool
	runSubscription(t, d.store, eventstore.SubscriptionConfig{Name: "mailer", MaxAttempts: 1, PollInterval: 50 * time.Millisecond,
		RetryBackoff: time.Millisecond},
		func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
			for _, e := range events {
				if e.Type == "Poison" && !healed.Load() {
					return errors.New("mail server said no")
				}
			}
			return nil
		})
	pgtest.WaitFor(t, "two dead letters", 30*time.Second, func() bool {
		dl, err := d.store.DeadLetters(context.Background(), "mailer")
		return err == nil && len(dl) == 2
	})
	r := want(t, d.strata("dead-letters", "list"), cli.ExitOK)
	for _, s := range []string{"mailer", "Poison", "mail server said no", "OrderPaid", "behind dead letter"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("dead-letters list lacks %q:\n%s", s, r)
		}
	}
	var dls []struct {
		Subscription string `json:"subscription"`
		Type         string `json:"type"`
		StreamID     string `json:"stream_id"`
		Error        string `json:"error"`
		BlockedBy    int64  `json:"blocked_by"`
	}
	r = want(t, d.strata("--json", "dead-letters", "list", "--subscription", "mailer"), cli.ExitOK)
	if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil || len(dls) != 2 || dls[0].Type != "Poison" || dls[1].BlockedBy == 0 {
		t.Fatalf("dead-letters list --json: %v\n%s", err, r)
	}
	// status reports them as a problem: exit 3.
	r = want(t, d.strata("status"), cli.ExitProblems)
	if !strings.Contains(r.stderr, "2 dead letters") || !strings.Contains(r.stdout, "Problems:") {
		t.Fatalf("status with dead letters:\n%s", r)
	}
	if st := parseStatus(t, want(t, d.strata("--json", "status"), cli.ExitProblems)); len(st.Problems) != 1 || st.Subscriptions[0].DeadLetters != 2 {
		t.Fatalf("status --json: %+v", st)
	}

	// Healed and retried, the events leave the dead letters, in order.
	healed.Store(true)
	r = want(t, d.strata("dead-letters", "retry", "mailer"), cli.ExitOK)
	if !strings.Contains(r.stdout, "2 dead letters of mailer marked for retry") {
		t.Fatalf("retry:\n%s", r)
	}
	d.eventually("no dead letters", func(r result) bool { return r.code == 0 && strings.Contains(r.stdout, "No dead letters.") },
		"dead-letters", "list")
	d.eventually("status without problems", func(r result) bool { return r.code == cli.ExitOK }, "status")
	want(t, d.strata("dead-letters", "retry", "nobody"), cli.ExitNotFound)
}

func TestStatusFailingSubscription(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	d.append("order-1", ev("Poison", `{}`))
	sub, err := d.store.Subscription(eventstore.SubscriptionConfig{Name: "strict", MaxAttempts: 1, OnFailure: eventstore.Stop,
		PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = sub.Run(ctx, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error { return errors.New("no") })
	if _, ok := errors.AsType[*eventstore.HandlerError](err); !ok {
		t.Fatalf("Run: %v", err)
	}
	r := want(t, d.strata("status"), cli.ExitProblems)
	if !strings.Contains(r.stderr, "strict partition 0 is failing") || !strings.Contains(r.stdout, "last error of strict partition 0") {
		t.Fatalf("status of a failed subscription:\n%s", r)
	}
}

func TestProjectionReset(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	for i := range 6 {
		d.append(fmt.Sprintf("order-%d", i%3), ev("OrderPlaced", `{}`))
	}
	var handled atomic.Int64
	// Counted after each commit, so that stopping then keeps them all.
	stop := runSubscription(t, d.store, eventstore.SubscriptionConfig{Name: "projection:orders", PollInterval: 50 * time.Millisecond,
		OnBatch: func(b eventstore.BatchInfo) { handled.Add(int64(b.Events)) }},
		func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error { return nil })
	pgtest.WaitFor(t, "six events handled", 30*time.Second, func() bool { return handled.Load() == 6 })
	stop()
	st := parseStatus(t, want(t, d.strata("--json", "status"), cli.ExitOK))
	end := st.Subscriptions[0].Checkpoint

	// To the start, by the projection's name: everything is lag again.
	r := want(t, d.strata("projection", "reset", "orders", "--to", "0"), cli.ExitOK)
	if !strings.Contains(r.stdout, "projection:orders reset to 0/0") || !strings.Contains(r.stdout, "read model was left as it is") {
		t.Fatalf("reset:\n%s", r)
	}
	st = parseStatus(t, want(t, d.strata("--json", "status"), cli.ExitOK))
	if st.Subscriptions[0].Checkpoint != "0/0" || st.Subscriptions[0].Lag != 6 {
		t.Fatalf("after reset to 0: %+v", st.Subscriptions[0])
	}
	// Back to the end, by its subscription name and a printed position.
	r = want(t, d.strata("--json", "projection", "reset", "projection:orders", "--to", end), cli.ExitOK)
	var js struct {
		Name     string `json:"name"`
		Position string `json:"position"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.Name != "projection:orders" || js.Position != end {
		t.Fatalf("reset --json: %v\n%s", err, r)
	}
	st = parseStatus(t, want(t, d.strata("--json", "status"), cli.ExitOK))
	if st.Subscriptions[0].Checkpoint != end || st.Subscriptions[0].Lag != 0 {
		t.Fatalf("after reset to the end: %+v", st.Subscriptions[0])
	}
	want(t, d.strata("projection", "reset", "nobody", "--to", "0"), cli.ExitNotFound)
	want(t, d.strata("projection", "reset", "orders"), cli.ExitUsage)
	r = want(t, d.strata("projection", "reset", "orders", "--to", "12-3"), cli.ExitUsage)
	if !strings.Contains(r.stderr, "TXID/SEQ") {
		t.Fatalf("bad position:\n%s", r)
	}
}

func TestUsageAndExitCodes(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{nil, cli.ExitUsage, "missing command"},
		{[]string{"frobnicate"}, cli.ExitUsage, `unknown command "frobnicate"`},
		{[]string{"status", "--bogus"}, cli.ExitUsage, "unknown flag: --bogus"},
		{[]string{"status", "extra"}, cli.ExitUsage, "unknown command"},
		{[]string{"stream", "show"}, cli.ExitUsage, "accepts 1 arg"},
		{[]string{"stream"}, cli.ExitUsage, "needs a subcommand"},
		{[]string{"dead-letters", "purge"}, cli.ExitUsage, `unknown command "purge"`},
		{[]string{"projection", "rebuild", "orders"}, cli.ExitUsage, "embedded in your program"},
		{[]string{"schema", "check"}, cli.ExitUsage, "embedded in your program"},
		{[]string{"--schema", "Bad-Name", "status"}, cli.ExitUsage, "bad schema name"},
		{[]string{"--schema", "nope_not_here", "status"}, cli.ExitError, "run 'strata migrate'"},
	} {
		r := d.strata(c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.says) {
			t.Errorf("strata %v: want exit %d saying %q, got %s", c.args, c.code, c.says, r)
		}
	}
	// Help is not an error.
	if r := want(t, d.strata("--help"), cli.ExitOK); !strings.Contains(r.stdout, "Exit codes:") {
		t.Errorf("help:\n%s", r)
	}
	// No database at all.
	if r := run(t, cmdEnv(), nil, "status"); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "DATABASE_URL") {
		t.Errorf("without a database: %s", r)
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	const pw = "Pa55-w0rd/with@odd:chars"
	esc := url.UserPassword("postgres", pw).String()
	secrets := []string{pw, esc[len("postgres:"):]}
	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
	}{
		{"unreachable URL flag", cmdEnv(), []string{"--database-url", "postgres://" + esc + "@127.0.0.1:1/test", "status"}, cli.ExitError},
		{"unreachable URL env", cmdEnv("DATABASE_URL=postgres://" + esc + "@127.0.0.1:1/test"), []string{"--json", "status"}, cli.ExitError},
		{"unparsable URL", cmdEnv(), []string{"--database-url=postgres://postgres:" + pw + "@[::1/test", "status"}, cli.ExitUsage},
		{"key=value form", cmdEnv(), []string{"--database-url", "host=127.0.0.1 port=1 user=postgres password='" + pw + "' dbname=test", "migrate"}, cli.ExitError},
		{"usage error after the URL", cmdEnv(), []string{"--database-url", "postgres://" + esc + "@127.0.0.1:1/test", "status", "--nope"}, cli.ExitUsage},
		{"help with the URL in the environment", cmdEnv("DATABASE_URL=postgres://" + esc + "@127.0.0.1:1/test"), []string{"status", "--help"}, cli.ExitOK},
		{"URL without its flag", cmdEnv(), []string{"status", "postgres://" + esc + "@127.0.0.1:1/test"}, cli.ExitUsage},
		{"URL as the command", cmdEnv(), []string{"postgres://" + esc + "@127.0.0.1:1/test"}, cli.ExitUsage},
		{"key=value without its flag", cmdEnv(), []string{"migrate", "host=127.0.0.1 password=" + pw}, cli.ExitUsage},
	} {
		r := run(t, c.env, secrets, c.args...)
		if r.code != c.code {
			t.Errorf("%s: want exit %d, got %s", c.name, c.code, r)
		}
		if c.code != cli.ExitOK && r.stderr == "" {
			t.Errorf("%s: no error printed", c.name)
		}
	}
	// A server error that echoes the connection's details (user, database)
	// but not the password: connecting to a database that does not exist.
	db := pgtest.NewEmpty(t)
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.User.Password(); !ok {
		u.User = url.UserPassword(u.User.Username(), pw)
		u.Path = "/no_such_db"
		r := run(t, cmdEnv(), secrets, "--database-url", u.String(), "status")
		if r.code != cli.ExitError || !strings.Contains(r.stderr, `database "no_such_db" does not exist`) {
			t.Errorf("unknown database: want exit 1 naming it, got %s", r)
		}
	}
}

func TestStatusNamesHorizonHolder(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	// A transaction holding an ID, left open: gap-safe readers cannot
	// pass it. (The oldest such transaction on the server is named; it
	// may be another test's, so the test checks that one is named.)
	tx, err := d.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := d.store.AppendTx(ctx, tx, "order-1", eventstore.Any, ev("OrderPlaced", `{}`)); err != nil {
		t.Fatal(err)
	}
	r := d.eventually("a horizon holder", func(r result) bool {
		return r.code == 0 && parseStatus(t, r).Horizon != nil
	}, "--json", "status", "--horizon-age", "1ms")
	var h struct {
		PID        int     `json:"pid"`
		AgeSeconds float64 `json:"age_seconds"`
	}
	if err := json.Unmarshal(*parseStatus(t, r).Horizon, &h); err != nil || h.PID == 0 || h.AgeSeconds <= 0 {
		t.Fatalf("horizon: %v\n%s", err, r)
	}
	r = want(t, d.strata("status", "--horizon-age", "1ms"), cli.ExitOK)
	if !strings.Contains(r.stdout, "Readers are held back by backend") {
		t.Fatalf("status text without the holder:\n%s", r)
	}
	// Younger than --horizon-age: not named.
	if st := parseStatus(t, want(t, d.strata("--json", "status", "--horizon-age", "1h"), cli.ExitOK)); st.Horizon != nil {
		t.Fatalf("a holder younger than an hour was named: %s", *st.Horizon)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while another goroutine
// (a child process's output copier) writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

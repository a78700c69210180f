package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
)

// hostile strings: each would make a terminal do something if printed raw
// (colour, clear the screen, a hidden OSC 8 link, a bell, an 8-bit CSI, a
// right-to-left override that disguises what follows, a byte that is not
// UTF-8).
const (
	hostileStream = "evil-\x1b[31mred\x1b]8;;http://attacker.example/\x07click\x1b]8;;\x07\u202egnp.exe"
	hostileType   = "Order\u009b2JPlaced"
	hostileKey    = "k\x1b[2J"
	hostileValue  = "v\u202etxt.exe\x00"
	hostileCorr   = "req-\x1b[1A\x1b[2K"
	hostileError  = "boom \x1b]0;pwned\x07 \x1b[2J\xff"
	hostileSub    = "projection:\x1b[5mblink"
)

// checkTerminalSafe fails when out holds anything but printable text,
// spaces and newlines.
func checkTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		if (r == utf8.RuneError && n == 1) || (r != '\n' && !unicode.IsPrint(r)) {
			t.Fatalf("%s printed %U at byte %d:\n%q", what, r, i, out)
		}
		i += n
	}
}

func TestHostileStringsEscaped(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	// The payload carries C1 and bidi characters raw (JSON allows them),
	// and an escaped ESC that must stay as it is.
	payload := `{"note":"` + "\u009b2J\u202e" + `","esc":"\u001b[31m"}`
	e := ev(hostileType, payload)
	e.Metadata = eventstore.Metadata{CorrelationID: hostileCorr, CausationID: hostileCorr, Values: map[string]string{hostileKey: "v\u202etxt.exe"}}
	// The store refuses some of these (NUL); a writer with SQL access or a
	// restore does not: write one event as the owner of the schema.
	d.append(hostileStream, e)
	meta, err := json.Marshal(map[string]string{hostileKey: hostileValue})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.db.Pool.Exec(ctx, `UPDATE `+pgx.Identifier{d.db.Schema, "events"}.Sanitize()+` SET metadata = $1::json`, string(meta)); err != nil {
		t.Fatal(err)
	}
	// A failing subscription with a hostile name and error, and a dead
	// letter with a hostile error.
	subs := pgx.Identifier{d.db.Schema, "subscriptions"}.Sanitize()
	bad := strings.ToValidUTF8(hostileError, "\ufffd")
	if _, err := d.db.Pool.Exec(ctx, `INSERT INTO `+subs+` (name, partition, partitions, state, last_error, owner, lease_until)
		VALUES ($1, 0, 1, 'failing', $2, $3, now() + interval '1 hour')`, hostileSub, bad, "owner-\x1b[8m"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.db.Pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{d.db.Schema, "dead_letters"}.Sanitize()+`
		(subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts)
		SELECT $1, 0, transaction_id, position, event_id, stream_id, event_type, $2, 3 FROM `+pgx.Identifier{d.db.Schema, "events"}.Sanitize(),
		hostileSub, bad); err != nil {
		t.Fatal(err)
	}

	// Readable where it can be: the text form quotes the hostile value with
	// its escapes shown; JSON keeps the same string, escaped.
	r := want(t, d.strata("stream", "show", hostileStream), cli.ExitOK)
	for _, s := range []string{`Stream "evil-\x1b[31mred\x1b]8;;http://attacker.example/\aclick\x1b]8;;\a\u202egnp.exe": 1 event`,
		`"Order\u009b2JPlaced"`, `"k\x1b[2J": "v\u202etxt.exe\x00"`, `"req-\x1b[1A\x1b[2K"`, `\u009b2J\u202e`, `"esc":"\u001b[31m"`} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stream show lacks %s:\n%s", s, r)
		}
	}
	var js struct {
		StreamID string `json:"stream_id"`
		Events   []struct {
			Type     string            `json:"type"`
			Data     map[string]string `json:"data"`
			Metadata map[string]string `json:"metadata"`
		} `json:"events"`
	}
	r = want(t, d.strata("--json", "stream", "show", hostileStream), cli.ExitOK)
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.StreamID != hostileStream || len(js.Events) != 1 ||
		js.Events[0].Type != hostileType || js.Events[0].Data["note"] != "\u009b2J\u202e" || js.Events[0].Metadata[hostileKey] != hostileValue {
		t.Errorf("stream show --json does not round-trip: %v %+v\n%s", err, js, r)
	}
	r = want(t, d.strata("status"), cli.ExitProblems)
	for _, s := range []string{`"projection:\x1b[5mblink" partition 0 is failing`, `"owner-\x1b[8m"`, `"boom \x1b]0;pwned\a \x1b[2J` + "\ufffd" + `"`} {
		if !strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("status lacks %s:\n%s", s, r)
		}
	}

	for _, args := range [][]string{
		{"events", "tail"},
		{"--json", "events", "tail"},
		{"stream", "show", hostileStream},
		{"--json", "stream", "show", hostileStream},
		{"trace", hostileCorr},
		{"--json", "trace", hostileCorr},
		{"status"},
		{"--json", "status"},
		{"dead-letters", "list"},
		{"--json", "dead-letters", "list"},
		{"stream", "show", "nothing-\x1b[2J"},
		{"trace", "nothing-\u202e"},
		{"dead-letters", "retry", hostileSub},            // changes state:
		{"projection", "reset", hostileSub, "--to", "0"}, // last
	} {
		r := d.strata(args...)
		if r.code != cli.ExitOK && r.code != cli.ExitProblems && r.code != cli.ExitNotFound {
			t.Fatalf("strata %q: %s", args, r)
		}
		checkTerminalSafe(t, strings.Join(args, " ")+" (stdout)", r.stdout)
		checkTerminalSafe(t, strings.Join(args, " ")+" (stderr)", r.stderr)
	}
}

// TestStatusHidesHorizonQuery: status names the backend holding readers
// back, never its query text (another session's SQL, literals included).
func TestStatusHidesHorizonQuery(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	const literal = "card-4111111111111111"
	tx, err := d.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var pid int
	var xid string
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text, pg_backend_pid()`).Scan(&xid, &pid); err != nil {
		t.Fatal(err)
	}
	// Its latest statement, which pg_stat_activity shows, has the literal.
	if _, err := tx.Exec(ctx, `SELECT '`+literal+`'`); err != nil {
		t.Fatal(err)
	}
	// The oldest holder on the server is named: ours, or an older one (of
	// another test). Whichever it is, its query text must not be printed.
	holderQuery := func(pid int) string {
		var q string
		if err := d.db.Pool.QueryRow(ctx, `SELECT coalesce(left(query, 200), '') FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&q); err != nil &&
			!errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return q
	}
	named := regexp.MustCompile(`backend (\d+) |"pid": (\d+),`)
	for _, args := range [][]string{{"--json", "status", "--horizon-age", "1ms"}, {"status", "--horizon-age", "1ms"}} {
		var holder int
		r := d.eventually("a holder named", func(r result) bool {
			m := named.FindStringSubmatch(r.stdout)
			if m == nil {
				return false
			}
			holder, _ = strconv.Atoi(m[1] + m[2])
			return true
		}, args...)
		q := holderQuery(holder)
		if holder == pid && !strings.Contains(q, literal) {
			t.Fatalf("our holder's query is %q", q)
		}
		if (q != "" && strings.Contains(r.stdout, q)) || strings.Contains(r.stdout, literal) || strings.Contains(r.stdout, `"query"`) {
			t.Fatalf("status printed the holder's query %q:\n%s", q, r)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestPasswordsRedactedStructurally: a password is masked where the
// connection string holds it, and nowhere else — a password that is also
// an ordinary word or digit leaves the rest of the output as it is.
func TestPasswordsRedactedStructurally(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	d.append("postgres-100", ev("Noted", `{"n":"0@%40 postgres"}`))
	base, err := url.Parse(d.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := base.User.Password(); ok {
		t.Skip("the test server's URL has a password of its own")
	}
	user := base.User.Username()
	unreachable := func(pw string, with bool) string {
		u := url.URL{Scheme: "postgres", Host: "127.0.0.1:1", Path: "/test", User: url.User(user)}
		if with {
			u.User = url.UserPassword(user, pw)
		}
		return u.String()
	}
	for _, pw := range []string{"0", "postgres", "@", "%40", "1"} {
		// A failed connection prints exactly what it prints without a
		// password.
		r := run(t, cmdEnv(), nil, "--database-url", unreachable(pw, true), "status")
		plain := run(t, cmdEnv(), nil, "--database-url", unreachable(pw, false), "status")
		if r.code != cli.ExitError || r.stderr != plain.stderr {
			t.Errorf("password %q: unreachable server:\n%s\nwithout a password:\n%s", pw, r, plain)
		}
		// Echoed whole (a URL given as a command): masked in place.
		u := unreachable(pw, true)
		r = run(t, cmdEnv(), nil, u)
		if want := `unknown command "` + unreachable("", false)[:len("postgres://"+user)] + `:xxxxx@127.0.0.1:1/test"`; !strings.Contains(r.stderr, want) {
			t.Errorf("password %q: URL as a command: want %s in\n%s", pw, want, r)
		}
		// Against the real server (trust ignores the password): the
		// output is what it is without a password.
		good := *base
		good.User = url.UserPassword(user, pw)
		args := []string{"--database-url", good.String(), "--schema", d.db.Schema, "stream", "show", "postgres-100"}
		r = want(t, run(t, cmdEnv(), nil, args...), cli.ExitOK)
		args[1] = base.String()
		plain = want(t, run(t, cmdEnv(), nil, args...), cli.ExitOK)
		if r.stdout != plain.stdout || !strings.Contains(r.stdout, "postgres-100") || !strings.Contains(r.stdout, `{"n":"0@%40 postgres"}`) {
			t.Errorf("password %q: stream show:\n%s\nwithout a password:\n%s", pw, r, plain)
		}
	}
	// key=value form, plain and quoted (with an escaped quote and a space).
	for _, pw := range []string{"0", "postgres", `'a\' b'`} {
		dsn := "host=127.0.0.1 port=1 user=" + user + " password=" + pw + " dbname=test"
		plainDSN := "host=127.0.0.1 port=1 user=" + user + " dbname=test"
		r := run(t, cmdEnv(), nil, "--database-url", dsn, "status")
		plain := run(t, cmdEnv(), nil, "--database-url", plainDSN, "status")
		if r.code != cli.ExitError || r.stderr != plain.stderr {
			t.Errorf("key=value password %s: unreachable server:\n%s\nwithout a password:\n%s", pw, r, plain)
		}
		r = run(t, cmdEnv(), nil, "migrate", dsn)
		if want := `unknown command "host=127.0.0.1 port=1 user=` + user + ` password=xxxxx dbname=test" for "strata migrate"`; !strings.Contains(r.stderr, want) {
			t.Errorf("key=value password %s as an argument: want %s in\n%s", pw, want, r)
		}
	}
	// A URL without a password is printed as it is.
	noPW := unreachable("", false)
	if r := run(t, cmdEnv(), nil, noPW); !strings.Contains(r.stderr, `unknown command "`+noPW+`"`) {
		t.Errorf("URL without a password:\n%s", r)
	}
}

// TestEmbeddedCommandErrorsClean: the errors of Command (printed by the
// embedding program) come with passwords masked and safe for a terminal.
func TestEmbeddedCommandErrorsClean(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	const dsn = "postgres://app:0@127.0.0.1:1/test"
	admin := cli.New(&cli.Config{Getenv: func(string) string { return "" }, Schema: d.db.Schema}).Command()
	admin.SetArgs([]string{"migrate", dsn + "\x1b[2J"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := admin.ExecuteContext(ctx)
	if err == nil || cli.ExitCode(err) != cli.ExitUsage {
		t.Fatalf("want a usage error, got %v", err)
	}
	msg := err.Error()
	checkTerminalSafe(t, "Command error", msg)
	if !strings.Contains(msg, `postgres://app:xxxxx@127.0.0.1:1/test\x1b[2J`) || strings.Contains(msg, "app:0@") {
		t.Fatalf("Command error: %s", msg)
	}
}

// TestStatusWarnsTransactionIDsBehind: after a logical restore into a new
// cluster (simulated: an event written, triggers off as pg_restore does,
// with a transaction ID the database has not reached), status says so
// first, with the fix, and exits with 3; a normal log does not.
func TestStatusWarnsTransactionIDsBehind(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	d.append("order-1", ev("OrderPlaced", `{}`))
	for _, args := range [][]string{{"status"}, {"--json", "status"}} {
		if r := want(t, d.strata(args...), cli.ExitOK); strings.Contains(r.stdout, "WARNING") || strings.Contains(r.stdout, "transaction_ids_behind") {
			t.Fatalf("a normal log:\n%s", r)
		}
	}
	tx, err := d.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var forged int64
	if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint + (1::bigint << 32)`).Scan(&forged); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{d.db.Schema, "events"}.Sanitize()+`
		(transaction_id, event_id, stream_id, version, category, event_type, schema_version, data)
		VALUES ($1, gen_random_uuid(), 'order-2', 1, 'order', 'OrderPlaced', 1, '{}')`, forged); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	fix := "pg_resetwal -e " + itoa(int(forged>>32+1))
	r := want(t, d.strata("status"), cli.ExitProblems)
	if !strings.HasPrefix(r.stdout, "WARNING: eventstore: the database's transaction IDs went back") || !strings.Contains(r.stdout, fix) ||
		!strings.Contains(r.stderr, "transaction IDs are behind the log's") {
		t.Fatalf("status after a restore:\n%s", r)
	}
	r = want(t, d.strata("--json", "status"), cli.ExitProblems)
	var js struct {
		Behind *struct {
			MaxEvent uint64 `json:"max_event_transaction_id"`
			Epoch    uint64 `json:"pg_resetwal_epoch"`
		} `json:"transaction_ids_behind"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.Behind == nil || js.Behind.MaxEvent != uint64(forged) ||
		js.Behind.Epoch != uint64(forged>>32+1) {
		t.Fatalf("status --json after a restore: %v\n%s", err, r)
	}
}

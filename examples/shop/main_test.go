package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/strata-go/strata/eventstore"
)

// shopBinary is the example built once for all tests, run as a user runs it.
var shopBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shop-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shopBinary = filepath.Join(dir, "shop")
	if out, err := exec.Command("go", "build", "-o", shopBinary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func databaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test"
}

func amqpURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func natsURL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// runShop runs the program with args plus a schema and topic prefix of
// its own (dropped when the test ends), and returns its stdout, stderr
// and exit code.
func runShop(t *testing.T, args ...string) (name, stdout, stderr string, code int) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name = "shop_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		pool, err := pgxpool.New(context.Background(), databaseURL())
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer pool.Close()
		if _, err := pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shopBinary, append([]string{"-schema", name, "-topics", name, "-workflow=false"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run shop: %v", err)
	}
	return name, out.String(), errOut.String(), code
}

// checkAccount checks the account the program printed for the seeded
// order 1000 and the orders 1001…1000+orders, then checks in the
// database that each order's correlation ID ties its three events into
// one causal chain and that each consumer recorded each message once.
func checkAccount(t *testing.T, schemaName, out string, orders int) {
	t.Helper()
	lines := []string{
		`^seed +1000 +OrderPlaced v1 stored as \{.*"amount":42\.5\}, correlation req-[0-9a-f]{8}$`,
		`^upcast +1000 +OrderPlaced v1 read as v2: total_cents=4250 currency=USD \(\$42\.50 for margaret\)$`,
		`^payment +1000 +charged \$42\.50 by card: PaymentCompleted, caused by OrderPlaced …[0-9a-f]{8} \(OrderPlaced v1 message, upcast to v2\)$`,
		`^email +1000 +to margaret@example\.com: "Your order 1000 is confirmed: \$42\.50 paid"`,
		`^order_summary \(the read model, built by the projection\):$`,
		`^ +ORDER +CUSTOMER +TOTAL +STATUS +CORRELATION +UPDATED$`,
		`^ +1000 +margaret +\$42\.50 +notified +req-[0-9a-f]{8} `,
		fmt.Sprintf(`^All %d orders placed, paid and notified\.`, orders+1),
	}
	for i := 1001; i <= 1000+orders; i++ {
		lines = append(lines,
			fmt.Sprintf(`^order +%d +placed: \$\d+\.\d\d for [a-z]+, correlation req-[0-9a-f]{8}$`, i),
			fmt.Sprintf(`^payment +%d +charged \$\d+\.\d\d by card: PaymentCompleted, caused by OrderPlaced …[0-9a-f]{8}$`, i),
			fmt.Sprintf(`^email +%d +to [a-z]+@example\.com: "Your order %d is confirmed: \$\d+\.\d\d paid", caused by PaymentCompleted …[0-9a-f]{8}$`, i, i),
			fmt.Sprintf(`^ +%d +[a-z]+ +\$\d+\.\d\d +notified +req-[0-9a-f]{8} `, i),
		)
	}
	for _, l := range lines {
		if !regexp.MustCompile(`(?m)` + l).MatchString(out) {
			t.Errorf("no line matches %s", l)
		}
	}
	// One line per step per order: nothing handled twice.
	for _, step := range []string{"payment", "email"} {
		if n := len(regexp.MustCompile(`(?m)^`+step+` `).FindAllString(out, -1)); n != orders+1 {
			t.Errorf("%d %s lines, want %d", n, step, orders+1)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
		return
	}

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: schemaName})
	for _, m := range regexp.MustCompile(`(?m)^ +(\d+) +\S+ +\S+ +notified +(req-[0-9a-f]{8}) `).FindAllStringSubmatch(out, -1) {
		id, correlation := m[1], m[2]
		events, err := store.ReadCorrelated(ctx, correlation, 100)
		if err != nil {
			t.Fatal(err)
		}
		byType := map[string]eventstore.Event{}
		for _, e := range events {
			if !strings.HasPrefix(e.StreamID, "wm.") { // the Postgres broker's copies of the messages
				byType[e.Type] = e
			}
		}
		placed, paid, sent := byType["OrderPlaced"], byType["PaymentCompleted"], byType["ConfirmationSent"]
		if len(byType) != 3 || placed.StreamID != "order-"+id || paid.StreamID != "payment-"+id || sent.StreamID != "notification-"+id {
			t.Errorf("order %s: correlation %s has events %v, want order-%s, payment-%s, notification-%s", id, correlation, events, id, id, id)
			continue
		}
		if paid.Metadata.CausationID != placed.ID.String() || sent.Metadata.CausationID != paid.ID.String() {
			t.Errorf("order %s: causation chain broken: payment caused by %q (OrderPlaced is %s), confirmation by %q (PaymentCompleted is %s)",
				id, paid.Metadata.CausationID, placed.ID, sent.Metadata.CausationID, paid.ID)
		}
	}
	for _, consumer := range []string{"payment", "notification"} {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schemaName, "processed_messages"}.Sanitize()+
			` WHERE consumer = $1`, consumer).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n != orders+1 {
			t.Errorf("consumer %s recorded %d processed messages, want %d", consumer, n, orders+1)
		}
	}
}

// The README's first command, on its default broker: Strata's Pub/Sub on
// the event store.
func TestShopOnPostgresPubSub(t *testing.T) {
	t.Parallel()
	// -timeout: the gap-safe readers wait for any open transaction on the
	// server, and other packages' tests may hold some for a while.
	name, out, errOut, code := runShop(t, "-orders", "4", "-timeout", "2m")
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "broker: Strata's Postgres Pub/Sub") {
		t.Errorf("the account does not name the default broker:\n%s", out)
	}
	checkAccount(t, name, out, 4)
}

// The same shop with the relay publishing to NATS JetStream and the
// services consuming from it.
func TestShopOnNATS(t *testing.T) {
	t.Parallel()
	name, out, errOut, code := runShop(t, "-broker", natsURL(), "-timeout", "2m")
	t.Cleanup(func() { deleteJetStreams(t, name+"_orders", name+"_payments") })
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "broker: NATS JetStream") {
		t.Errorf("the account does not name NATS:\n%s", out)
	}
	checkAccount(t, name, out, 3)
}

// In process, with Watermill's GoChannel.
func TestShopOnGoChannel(t *testing.T) {
	t.Parallel()
	name, out, errOut, code := runShop(t, "-broker", "gochannel", "-timeout", "2m")
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	checkAccount(t, name, out, 3)
}

// With RabbitMQ: durable queues, publisher confirms.
func TestShopOnRabbitMQ(t *testing.T) {
	t.Parallel()
	name, out, errOut, code := runShop(t, "-broker", amqpURL(), "-timeout", "2m")
	t.Cleanup(func() { deleteQueues(amqpURL(), []string{name + "_orders", name + "_payments"}) })
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "broker: RabbitMQ at ") || strings.Contains(out, "guest:guest") {
		t.Errorf("the account does not name RabbitMQ, or shows its password:\n%s", out)
	}
	checkAccount(t, name, out, 3)
}

// A run that cannot finish in time exits 1 and says so.
func TestShopDeadline(t *testing.T) {
	t.Parallel()
	_, out, errOut, code := runShop(t, "-timeout", "1ms")
	if code != 1 || !strings.Contains(errOut, "shop: not done within 1ms") {
		t.Fatalf("exit code %d, stderr %q, want 1 and 'not done within 1ms'; stdout:\n%s", code, errOut, out)
	}
}

// A broker it does not know is a clear error, exit code 1.
func TestShopUnknownBroker(t *testing.T) {
	t.Parallel()
	_, _, errOut, code := runShop(t, "-broker", "carrier-pigeon")
	if code != 1 || !strings.Contains(errOut, `unknown broker "carrier-pigeon"`) {
		t.Fatalf("exit code %d, stderr %q, want 1 and an unknown broker error", code, errOut)
	}
}

func deleteJetStreams(t *testing.T, names ...string) {
	nc, err := nats.Connect(natsURL())
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := js.DeleteStream(ctx, n); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("cleanup: delete stream %s: %v", n, err)
		}
		cancel()
	}
}

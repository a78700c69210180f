package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
)

// Bad input, swept, not sampled (promise 5): consumer and relay names of
// every length around the limit, in runes of 1 to 4 bytes, and every byte
// value; relay configurations over their numeric range. Each is refused
// with an error matching eventstore.ErrInvalidArgument before anything is
// written, or works with the name stored as given.

var runeWidths = []string{"a", "é", "€", "😀"}

func textOfLen(r string, n int) string { return strings.Repeat(r, n/len(r)+1)[:n] }

func sweepNames() []string {
	var names []string
	for _, r := range runeWidths {
		for n := range 71 {
			names = append(names, textOfLen(r, n))
		}
		for n := eventstore.MaxStreamIDLength - 2; n <= eventstore.MaxStreamIDLength+2; n++ {
			names = append(names, textOfLen(r, n))
		}
	}
	for b := range 256 {
		names = append(names, "c"+string([]byte{byte(b)})+"z")
	}
	return names
}

func validName(s string) bool {
	return s != "" && len(s) <= eventstore.MaxStreamIDLength && utf8.ValidString(s) && !strings.Contains(s, "\x00")
}

func TestSweepOutbox(t *testing.T) {
	t.Parallel()
	store, db := newStore(t)
	ctx := context.Background()
	processed := func() (n int) {
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "processed_messages"}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, name := range sweepNames() {
		d, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: name, Schema: db.Schema})
		if !validName(name) {
			if d != nil || !errors.Is(err, eventstore.ErrInvalidArgument) {
				t.Errorf("NewDeduplicator(%q): %v, want ErrInvalidArgument", name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewDeduplicator(%q): %v", name, err)
			continue
		}
		// The name works: a message is processed once, under that name.
		before := processed()
		msg := message.NewMessage("m-1", nil)
		if _, err := d.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, nil })(msg); err != nil {
			t.Errorf("Deduplicate as %q: %v", name, err)
			continue
		}
		if ok, err := d.Processed(ctx, "m-1"); err != nil || !ok || processed() != before+1 {
			t.Errorf("Deduplicate as %q: processed %v, %v", name, ok, err)
		}
	}
	// The relay's name and configuration reach the subscription: refused
	// at Run with a typed error, nothing registered.
	subs := func() (n int) {
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "subscriptions"}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	type relayRow struct {
		name string
		cfg  outbox.Config
	}
	var rows []relayRow
	for b := range 256 {
		if v := "c" + string([]byte{byte(b)}) + "z"; !validName(v) {
			rows = append(rows, relayRow{fmt.Sprintf("name with byte %#x", b), outbox.Config{Name: v}},
				relayRow{fmt.Sprintf("category with byte %#x", b), outbox.Config{Categories: []string{v}}},
				relayRow{fmt.Sprintf("owner with byte %#x", b), outbox.Config{Owner: v}})
		}
	}
	rows = append(rows, relayRow{"name too long", outbox.Config{Name: strings.Repeat("r", eventstore.MaxStreamIDLength)}},
		relayRow{"too many partitions", outbox.Config{Partitions: eventstore.MaxPartitions + 1}},
		relayRow{"lease of 1ns", outbox.Config{LeaseTTL: time.Nanosecond}})
	for _, r := range rows {
		before := subs()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := outbox.NewRelay(store, nopPublisher{}, &r.cfg).Run(rctx)
		cancel()
		if !errors.Is(err, eventstore.ErrInvalidArgument) || subs() != before {
			t.Errorf("Relay with %s: %v, want ErrInvalidArgument and nothing registered", r.name, err)
		}
	}
}

type nopPublisher struct{}

func (nopPublisher) Publish(string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                              { return nil }

package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
)

// Three Expiry workers run at once (as three processes would) over old
// and recent IDs of two consumers and a third consumer not configured:
// every old ID of the configured consumers goes, no recent one, nothing
// of the third, and no worker fails. Bad configurations are refused.
func TestExpiryWorkersForgetOldIDsOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db := newStore(t)
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	table := pgx.Identifier{db.Schema, "processed_messages"}.Sanitize()
	for _, c := range []string{"a", "b", "c"} {
		if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (consumer, message_id, processed_at)
			SELECT $2, 'old-' || i, $1::timestamptz - i * interval '1 second' FROM generate_series(1, 3000) i
			UNION ALL SELECT $2, 'new-' || i, $1::timestamptz + i * interval '1 second' FROM generate_series(1, 200) i`, table),
			now.Add(-time.Hour), c); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &outbox.ExpiryConfig{Schema: db.Schema, Consumers: []string{"a", "b"}, MaxAge: time.Hour, Interval: 10 * time.Millisecond,
		BatchSize: 250, Now: func() time.Time { return now }}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 3 {
		x, err := outbox.NewExpiry(db.Pool, cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := x.Run(rctx); err != nil {
				t.Error(err)
			}
		})
	}
	count := func(where string) int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE `+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for count(`consumer IN ('a', 'b') AND message_id LIKE 'old-%'`) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("old IDs still there after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if n := count(`message_id LIKE 'new-%'`); n != 600 {
		t.Fatalf("%d recent IDs left, want 600", n)
	}
	if n := count(`consumer = 'c'`); n != 3200 {
		t.Fatalf("%d IDs of the consumer not configured left, want 3200", n)
	}
	for _, bad := range []*outbox.ExpiryConfig{nil, {Consumers: []string{"a"}}, {MaxAge: time.Hour},
		{Consumers: []string{""}, MaxAge: time.Hour}, {Consumers: []string{"a"}, MaxAge: time.Hour, BatchSize: -1}} {
		if _, err := outbox.NewExpiry(db.Pool, bad); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Fatalf("NewExpiry(%+v): %v, want ErrInvalidArgument", bad, err)
		}
	}
}

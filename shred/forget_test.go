package shred_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// signups is a read model that keeps the personal email of each signup,
// with a Forget that scrubs it.
type signups struct {
	table string
	// hold, when set, is called by the handler for each event after the
	// event was opened and before the row is written.
	hold func(e eventstore.Event)
}

func (s *signups) projection(f *fixture) projection.Projection {
	return projection.Projection{
		Name: "signups",
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			if e.Type != "Signup" {
				return nil
			}
			v, err := schema.DecodeAs[Signup](f.reg, e)
			if err != nil {
				return err
			}
			if s.hold != nil {
				s.hold(e)
			}
			_, err = tx.Exec(ctx, `INSERT INTO `+s.table+` VALUES ($1, $2, $3)`, e.StreamID, v.Customer, v.Email)
			return err
		}),
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `TRUNCATE `+s.table)
			return err
		},
		Forget: func(ctx context.Context, tx pgx.Tx, subject string) error {
			_, err := tx.Exec(ctx, `UPDATE `+s.table+` SET email = $2 WHERE customer = $1`, subject, schema.Erased)
			return err
		},
	}
}

func newSignups(t testing.TB, f *fixture) *signups {
	s := &signups{table: f.store.Table("signups")}
	if _, err := f.db.Pool.Exec(context.Background(), `CREATE TABLE `+s.table+` (stream_id text PRIMARY KEY, customer text, email text)`); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *signups) rows(t testing.TB, f *fixture) map[string]string {
	t.Helper()
	rows, err := f.db.Pool.Query(context.Background(), `SELECT customer, email FROM `+s.table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var c, e string
	if _, err := pgx.ForEachRow(rows, []any{&c, &e}, func() error { out[c] = e; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// The race: a key deleted while a projection's batch has opened the
// subject's email and not yet written it. Forget waits for the batch
// (the key row is share-locked in the batch's transaction) and then
// scrubs what it wrote, so no plaintext is left in the read model; the
// rebuild after it reads the email erased; the other subject is intact.
func TestForgetRacesRunningProjection(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sg := newSignups(t, f)
	opened, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	sg.hold = func(e eventstore.Event) {
		if e.StreamID == "account-ada" {
			once.Do(func() { close(opened); <-release })
		}
	}
	runner := projection.NewRunner(f.store, []projection.Projection{sg.projection(f)}, nil)
	f.append(t, "account-bob", Signup{Customer: "c-bob", Email: "bob@example.com", Plan: "free"})
	f.append(t, "account-ada", Signup{Customer: "c-ada", Email: "ada@example.com", Plan: "pro"})

	runDone := make(chan error, 1)
	go func() { runDone <- runner.Run(ctx) }()
	select {
	case <-opened:
	case <-time.After(time.Minute): // gap-safe: an open transaction anywhere on the server delays it
		t.Fatal("the projection did not reach ada's event")
	}
	// The batch holds ada's plaintext. Forget now, and let the batch go
	// on once Forget has either finished or is waiting for a lock.
	forgot := make(chan error, 1)
	go func() { forgot <- runner.Forget(context.Background(), f.sh, "c-ada") }()
	var forgetErr error
	finished := false
	pgtest.WaitFor(t, "forget to finish or to wait for the batch", 10*time.Second, func() bool {
		select {
		case forgetErr = <-forgot:
			finished = true
			return true
		default:
		}
		var waiting int
		err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%subject_keys%' AND datname = current_database()`).Scan(&waiting)
		return err == nil && waiting > 0
	})
	close(release)
	if !finished {
		select {
		case forgetErr = <-forgot:
		case <-time.After(30 * time.Second):
			t.Fatal("forget did not finish after the batch")
		}
	}
	if forgetErr != nil {
		t.Fatal(forgetErr)
	}
	pgtest.WaitFor(t, "both signups in the read model", time.Minute, func() bool { return len(sg.rows(t, f)) == 2 })
	rows := sg.rows(t, f)
	if rows["c-ada"] != schema.Erased || rows["c-bob"] != "bob@example.com" {
		t.Fatalf("after forget racing the batch: %v (finished before the batch: %v)", rows, finished)
	}
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, []string{"ada@example.com"}); len(hits) > 0 {
		t.Fatalf("plaintext left after forget:\n%s", strings.Join(hits, "\n"))
	}
	cancel()
	if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}

	// A rebuild after forget builds the erased read model, and the other
	// subject's row intact.
	sg.hold = nil
	if _, err := f.db.Pool.Exec(context.Background(), `UPDATE `+sg.table+` SET email = 'stale'`); err != nil {
		t.Fatal(err)
	}
	rb := projection.NewRunner(f.store, []projection.Projection{sg.projection(f)}, nil)
	if err := rb.Rebuild(context.Background(), "signups", nil); err != nil {
		t.Fatal(err)
	}
	if rows := sg.rows(t, f); rows["c-ada"] != schema.Erased || rows["c-bob"] != "bob@example.com" {
		t.Fatalf("after the rebuild: %v", rows)
	}
}

// A handler's error may quote a personal value in a form Redact does not
// know (upper case, here): forgetting the subject replaces the error text
// of its streams' dead letters.
func TestForgetScrubsDeadLetters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failing := projection.Projection{
		Name:        "mailer",
		MaxAttempts: 1,
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			v, err := schema.DecodeAs[Signup](f.reg, e)
			if err != nil {
				return err
			}
			return errors.New("cannot mail " + strings.ToUpper(v.Email))
		}),
	}
	runner := projection.NewRunner(f.store, []projection.Projection{failing}, nil)
	f.append(t, "account-ada", Signup{Customer: "c-ada", Email: "ada@example.com", Plan: "pro"})
	runDone := make(chan error, 1)
	go func() { runDone <- runner.Run(ctx) }()
	pgtest.WaitFor(t, "the dead letter", time.Minute, func() bool {
		dl, err := runner.DeadLetters(ctx, "mailer")
		return err == nil && len(dl) == 1
	})
	cancel()
	<-runDone
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, []string{"ADA@EXAMPLE.COM"}); len(hits) != 1 || !strings.HasPrefix(hits[0], "dead_letters") {
		t.Fatalf("before forget, the email should be in the dead letter only: %v", hits)
	}
	if err := f.sh.Forget(context.Background(), "c-ada"); err != nil {
		t.Fatal(err)
	}
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, []string{"ADA@EXAMPLE.COM"}); len(hits) > 0 {
		t.Fatalf("after forget: %v", hits)
	}
	dl, err := runner.DeadLetters(context.Background(), "mailer")
	if err != nil || len(dl) != 1 || dl[0].Error != shred.ErasedError {
		t.Fatalf("dead letters after forget: %+v %v", dl, err)
	}
}

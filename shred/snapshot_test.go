package shred_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
)

// A snapshot is folded from plaintext: one saved after its subject was
// forgotten (an aggregate that loaded before the forget and saves after
// it), or while the forget's transaction is open, must not be stored.
func TestSnapshotAfterForgetNotStored(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, "account-ada", Signup{Customer: "c-ada", Email: "ada@example.com", Plan: "pro"})
	f.append(t, "account-bob", Signup{Customer: "c-bob", Email: "bob@example.com", Plan: "free"})
	state := func(stream string) eventstore.Snapshot { // what an aggregate loaded before the forget
		evs := f.read(t, stream)
		return eventstore.Snapshot{StreamID: stream, Version: 1, Data: evs[0].Data}
	}
	ada, bob := state("account-ada"), state("account-bob")
	if !strings.Contains(string(ada.Data), "ada@example.com") {
		t.Fatalf("read before forget: %s", ada.Data)
	}

	// Saved after the forget committed.
	if err := f.sh.Forget(ctx, "c-ada"); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SaveSnapshot(ctx, ada); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SaveSnapshot(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, []string{"ada@example.com"}); len(hits) > 0 {
		t.Fatalf("plaintext stored after forget:\n%s", strings.Join(hits, "\n"))
	}
	if _, err := f.store.LoadSnapshot(ctx, "account-bob"); err != nil {
		t.Fatalf("the other subject's snapshot: %v", err)
	}

	// Saved while the forget's transaction is open: it waits for it.
	f.append(t, "account-cy", Signup{Customer: "c-cy", Email: "cy@example.com", Plan: "pro"})
	cy := state("account-cy")
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := f.sh.ForgetTx(ctx, tx, "c-cy"); err != nil {
		t.Fatal(err)
	}
	saved := make(chan error, 1)
	go func() { saved <- f.store.SaveSnapshot(ctx, cy) }()
	var saveErr error
	select {
	case saveErr = <-saved:
		saved <- saveErr
		t.Logf("the save did not wait for the forget (%v)", saveErr)
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case saveErr = <-saved:
	case <-time.After(time.Minute):
		t.Fatal("the save did not finish after the forget")
	}
	if saveErr != nil {
		t.Fatal(saveErr)
	}
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, []string{"cy@example.com"}); len(hits) > 0 {
		t.Fatalf("plaintext stored by a save racing the forget:\n%s", strings.Join(hits, "\n"))
	}
}

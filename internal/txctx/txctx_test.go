package txctx_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/txctx"
)

// fakeTx is a pgx.Tx that is never used, only carried.
type fakeTx struct{ pgx.Tx }

func TestWithFrom(t *testing.T) {
	ctx := context.Background()
	if _, ok := txctx.From(ctx); ok {
		t.Fatal("From found a transaction in an empty context")
	}
	if _, ok := txctx.From(txctx.With(ctx, nil)); ok {
		t.Fatal("From reported a nil transaction")
	}
	tx := &fakeTx{}
	got, ok := txctx.From(txctx.With(ctx, tx))
	if !ok || got != tx {
		t.Fatalf("From = %v, %v; want the transaction With stored", got, ok)
	}
	// Code that reads the key directly sees the same value.
	if v, _ := txctx.With(ctx, tx).Value(txctx.Key{}).(pgx.Tx); v != tx {
		t.Fatalf("Value(Key{}) = %v", v)
	}
}

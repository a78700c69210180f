// Package txctx carries a caller's pgx.Tx in a context.Context, under the
// one key every package of the module uses for "the transaction".
//
// Contract: a context made by With carries tx for From, whichever package
// made it. pubsub.ContextWithTx puts a transaction there for the Pub/Sub
// publisher to append in; outbox's Deduplicator puts its transaction there
// for the handler. Both read the same key, so a handler running under the
// Deduplicator publishes through pubsub in the Deduplicator's transaction,
// and the outputs commit with the record that the message was handled.
//
// Packages that must keep the key in their own code (ctx.Value(txKey{}))
// declare it as an alias of Key.
package txctx

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Key is the context key under which the transaction is stored. Prefer
// With and From; Key exists for code that reads the value directly.
type Key struct{}

// With returns a context carrying tx.
func With(ctx context.Context, tx pgx.Tx) context.Context {
	return context.WithValue(ctx, Key{}, tx)
}

// From returns the transaction that With put in ctx; ok is false when ctx
// carries none (or a nil one).
func From(ctx context.Context) (tx pgx.Tx, ok bool) {
	tx, ok = ctx.Value(Key{}).(pgx.Tx)
	return tx, ok && tx != nil
}

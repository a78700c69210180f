package pubsub

import "github.com/strata-go/strata/internal/txctx"

// txKey is the module's one context key for the caller's transaction
// (internal/txctx), so that a transaction put in a context by one package
// is seen by the others.
type txKey = txctx.Key

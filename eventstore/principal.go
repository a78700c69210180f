package eventstore

import (
	"context"
	"fmt"
)

// MaxPrincipalLength is the longest principal, in bytes, an append
// accepts (WithPrincipal).
const MaxPrincipalLength = 256

type principalKey struct{}

// WithPrincipal returns a context that makes every append under it
// (Append, AppendTx, and what appends through them: aggregate
// repositories, Pub/Sub publishing) record principal — the authenticated
// user or service the application appends for — with each of its events,
// in the events table's principal column, indexed for ReadByPrincipal and
// shown by `strata stream show` and `strata trace`. The application sets
// it from its own authentication (a verified token's subject, say); an
// event's metadata cannot set it. An empty principal records none. An
// append whose principal is longer than MaxPrincipalLength, not valid
// UTF-8 or holding a NUL byte fails with an *InvalidEventError (field
// "principal") and writes nothing.
//
// The database vouches for a second column itself: db_role, the login
// role of the connection that appended (see migration 0040 and the
// README's Security section for what each can and cannot prove).
func WithPrincipal(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, principalKey{}, principal)
}

// PrincipalFrom returns the principal WithPrincipal put in ctx, or "".
func PrincipalFrom(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

// principalOf returns ctx's principal once checked.
func principalOf(ctx context.Context, streamID string) (string, error) {
	p := PrincipalFrom(ctx)
	bad := func(reason string) error {
		return &InvalidEventError{StreamID: streamID, Index: -1, Field: "principal", Reason: reason}
	}
	switch {
	case len(p) > MaxPrincipalLength:
		return "", bad(fmt.Sprintf("principal is %d bytes, longer than %d", len(p), MaxPrincipalLength))
	case !validText(p):
		return "", bad("principal is not valid UTF-8 or contains a NUL byte")
	}
	return p, nil
}

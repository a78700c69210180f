package aggregate

import (
	"context"
	"maps"

	"github.com/strata-go/strata/eventstore"
)

// Opts are per-call options of Save, SaveTx, Update and UpdateTx.
type Opts struct {
	// Metadata is written into every event the call saves. Its non-empty
	// CorrelationID and CausationID replace those from the context (see
	// WithMetadata), and its Values are added to the context's, replacing
	// those with the same key. Default: the context's metadata only.
	Metadata eventstore.Metadata
}

type metadataKey struct{}

// WithMetadata returns a copy of ctx carrying md, for every event saved
// under it: a request handler puts the request's correlation ID (and the
// command's ID as causation) in the context once, and every Save and
// Update below it stamps them on each event. md is merged over metadata
// already in ctx: its non-empty IDs replace the old ones and its Values
// are added, replacing those with the same key.
func WithMetadata(ctx context.Context, md eventstore.Metadata) context.Context {
	return context.WithValue(ctx, metadataKey{}, merge(MetadataFrom(ctx), md))
}

// MetadataFrom returns the metadata ctx carries (see WithMetadata), or the
// zero Metadata.
func MetadataFrom(ctx context.Context) eventstore.Metadata {
	md, _ := ctx.Value(metadataKey{}).(eventstore.Metadata)
	return md
}

// merge returns base with over's non-empty parts on top. It never changes
// base's map.
func merge(base, over eventstore.Metadata) eventstore.Metadata {
	if over.CorrelationID != "" {
		base.CorrelationID = over.CorrelationID
	}
	if over.CausationID != "" {
		base.CausationID = over.CausationID
	}
	if len(over.Values) > 0 {
		values := make(map[string]string, len(base.Values)+len(over.Values))
		maps.Copy(values, base.Values)
		maps.Copy(values, over.Values)
		base.Values = values
	}
	return base
}

// callMetadata is the metadata of one call: the context's, then each
// Opts' in turn.
func callMetadata(ctx context.Context, opts []Opts) eventstore.Metadata {
	md := MetadataFrom(ctx)
	for _, o := range opts {
		md = merge(md, o.Metadata)
	}
	return md
}

package projection

import (
	"context"

	"github.com/strata-go/strata/eventstore"
)

// WaitFor waits until the projection named name has handled the event at
// pos (usually the eventstore.AppendResult.Position of an append), so
// that its read model shows that append: read your own writes. The
// projection may run in any process; WaitFor is woken by the commit of its
// checkpoint and returns when ctx ends first. See eventstore.Store.WaitFor
// for what "handled" means and the errors.
func (r *Runner) WaitFor(ctx context.Context, name string, pos eventstore.Position) error {
	e, err := r.entry(name)
	if err != nil {
		return err
	}
	return r.store.WaitFor(ctx, e.sub, pos)
}

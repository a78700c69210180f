package aggregate

import "strings"

// AggregateID is the inverse of StreamID: the aggregate ID of one of the
// repository's streams ("42" for "order-42"), and false for a stream of
// another category.
func (r *Repository[T]) AggregateID(streamID string) (string, bool) {
	return strings.CutPrefix(streamID, r.cfg.Category+"-")
}

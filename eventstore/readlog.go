package eventstore

import (
	"context"
	"iter"
)

// readLogPage is how many events ReadLog fetches per query.
const readLogPage = 500

// ReadLog returns the global log after the position after (the zero
// Position: from the start), in log order, as an iterator that reads it
// page by page (500 events a query, one page in memory at a time) with
// ReadAllFiltered, f selecting the events (the zero Filter: all). It stops
// at the end of the readable log as it was when the last page was read;
// events committed later are left for the next call. An error (a bad
// argument, a failed query) is yielded once, after which the iterator
// stops; breaking out of the loop stops it too.
//
// It fits schema.Registry.CheckEvents, which dry-runs the registry on
// every stored event:
//
//	rep, err := reg.CheckEvents(ctx, store.ReadLog(ctx, eventstore.Position{}, eventstore.Filter{}), 0)
func (s *Store) ReadLog(ctx context.Context, after Position, f Filter) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			page, err := s.ReadAllFiltered(ctx, after, readLogPage, f)
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, e := range page.Events {
				if !yield(e, nil) {
					return
				}
			}
			if page.AtEnd {
				return
			}
			after = page.Next
		}
	}
}

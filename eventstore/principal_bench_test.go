package eventstore_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/strata-go/strata/eventstore"
)

// strataAppendAs is strataAppend under a principal (WithPrincipal): the
// principal column and its partial index are written.
func (d *benchDB) strataAppendAs(writers, events int, principal string) benchVariant {
	return benchVariant{name: "strata+principal", run: func(b *testing.B) int {
		inParallel(b, writers, func() func(context.Context) error {
			stream := benchStream("principal")
			var version int64
			batch := make([]eventstore.NewEvent, events)
			k := 0
			return func(ctx context.Context) error {
				for i := range batch {
					batch[i] = payloads[k%len(payloads)].newEvent()
					k++
				}
				res, err := d.store.Append(eventstore.WithPrincipal(ctx, principal), stream, eventstore.Exactly(version), batch...)
				version = res.Version
				return err
			}
		})
		return b.N * events
	}}
}

// BenchmarkAppendPrincipal: single-event appends with and without a
// principal, against one autocommit INSERT of the same row (the baseline
// table has the audit columns too, left NULL and defaulted).
func BenchmarkAppendPrincipal(b *testing.B) {
	d := newBenchDB(b, nil)
	for _, w := range []int{1, 16} {
		b.Run("writers="+strconv.Itoa(w), func(b *testing.B) {
			compare(b, []int{0}, d.baselineInsert(w), d.strataAppend(w, 1), d.strataAppendAs(w, 1, "alice@example.com"))
		})
	}
}

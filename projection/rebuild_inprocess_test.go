package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
)

// TestRebuildRateBesideInProcessRunner: a Runner in the same process holds
// the projection's partition, so it, not Rebuild's own subscription,
// replays the log. Rebuild still reports a real rate and a Done that
// grows batch by batch, and returns as soon as the replay caught up (not
// at its next one-second status check).
func TestRebuildRateBesideInProcessRunner(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	bulkAppend(t, s, 1200, 6, "")
	slow := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		time.Sleep(500 * time.Microsecond) // 1,200 events: about 0.6s of replay
		return tt.Handle(ctx, tx, e)
	})
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: slow, Reset: tt.reset, BatchSize: 50}}, nil)
	runRunner(t, r)
	waitModel(t, db.Pool, tt, db.Schema, 30*time.Second)

	var reports []projection.Progress
	if err := r.Rebuild(ctx, "totals", func(p projection.Progress) { reports = append(reports, p) }); err != nil {
		t.Fatal(err)
	}
	last := reports[len(reports)-1]
	if !last.Finished || last.Done != 1200 || last.Total != 1200 {
		t.Fatalf("last report %+v, want 1200 of 1200, finished", last)
	}
	rated, steps := false, map[int64]bool{}
	for _, p := range reports[:len(reports)-1] {
		rated = rated || p.Rate > 0
		steps[p.Done] = true
	}
	if !rated {
		t.Errorf("no report before the last had a rate: %+v", reports)
	}
	if len(steps) < 3 {
		t.Errorf("Done took %d values before the end, want it to grow batch by batch: %+v", len(steps), reports)
	}
	waitModel(t, db.Pool, tt, db.Schema, 30*time.Second)

}

// TestRebuildEndsWithRunnersReplay: with a Runner in the same process
// replaying a small log, Rebuild returns as soon as the replay caught up,
// not at its next one-second status check.
func TestRebuildEndsWithRunnersReplay(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	bulkAppend(t, s, 100, 4, "")
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: tt, Reset: tt.reset, BatchSize: 50}}, nil)
	runRunner(t, r)
	waitModel(t, db.Pool, tt, db.Schema, 30*time.Second)
	best := time.Hour // the best of three, the machine being shared
	for range 3 {
		start := time.Now()
		var fin projection.Progress
		if err := r.Rebuild(ctx, "totals", func(p projection.Progress) { fin = p }); err != nil {
			t.Fatal(err)
		}
		if !fin.Finished || fin.Done != 100 {
			t.Fatalf("rebuild: %+v", fin)
		}
		best = min(best, time.Since(start))
	}
	if best >= 700*time.Millisecond {
		t.Errorf("a rebuild of 100 events replayed by the Runner took %v at best, want it under 0.7s", best)
	}
	waitModel(t, db.Pool, tt, db.Schema, 30*time.Second)
}

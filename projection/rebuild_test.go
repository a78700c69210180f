package projection_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// bulkAppend appends n events across streams, 1,000 per transaction.
func bulkAppend(t testing.TB, s *eventstore.Store, n, streams int, pad string) {
	t.Helper()
	ctx := context.Background()
	per := 1000 / streams
	for done := 0; done < n; {
		err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
			for k := 0; k < streams && done < n; k++ {
				evs := make([]eventstore.NewEvent, 0, per)
				for i := 0; i < per && done+len(evs) < n; i++ {
					evs = append(evs, eventstore.NewEvent{Type: "Tick", Data: fmt.Appendf(nil, `{"n":%d,"pad":%q}`, done+i, pad)})
				}
				if _, err := s.AppendTx(ctx, tx, fmt.Sprintf("bulk-%d", k), eventstore.Any, evs...); err != nil {
					return err
				}
				done += len(evs)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Rebuild wipes and replays with progress; interrupted, it leaves a record
// and the next Rebuild resumes from the checkpoint instead of starting over;
// Reset to the start replays too.
func TestRebuildProgressAndResume(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	bulkAppend(t, s, 6000, 10, "")
	var handled atomic.Int64
	slow := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		handled.Add(1)
		return tt.Handle(ctx, tx, e)
	})
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: slow, Reset: tt.reset, BatchSize: 100}}, nil)
	// First pass builds it.
	if err := r.Rebuild(ctx, "totals", nil); err != nil {
		t.Fatal(err)
	}
	waitModel(t, db.Pool, tt, db.Schema, time.Second)

	// Spoil the read model, then rebuild, interrupting after 2,000 events.
	if _, err := db.Pool.Exec(ctx, `UPDATE `+tt.name()+` SET total = -1`); err != nil {
		t.Fatal(err)
	}
	handled.Store(0)
	rctx, cancel := context.WithCancel(ctx)
	var reports []projection.Progress
	err := r.Rebuild(rctx, "totals", func(p projection.Progress) {
		reports = append(reports, p)
		if p.Done >= 2000 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild returned %v", err)
	}
	if len(reports) == 0 || reports[0].Total != 6000 || reports[0].Resumed {
		t.Fatalf("first reports: %+v", reports)
	}
	st := statusOf(t, r, "totals")
	if st.State != projection.StateRebuilding || st.Rebuild == nil || st.Rebuild.Total != 6000 || st.EventsHandled == 0 {
		t.Fatalf("status of an interrupted rebuild: %+v", st)
	}
	interrupted := handled.Load()

	var last projection.Progress
	var calls int
	if err := r.Rebuild(ctx, "totals", func(p projection.Progress) { last = p; calls++ }); err != nil {
		t.Fatal(err)
	}
	if !last.Finished || !last.Resumed || last.Done != 6000 || last.Total != 6000 || calls < 2 {
		t.Fatalf("last report %+v after %d calls", last, calls)
	}
	if total := handled.Load(); total >= 6000+interrupted {
		t.Fatalf("the resumed rebuild started over: %d events handled, %d before the interruption", total, interrupted)
	}
	waitModel(t, db.Pool, tt, db.Schema, time.Second)
	if st := statusOf(t, r, "totals"); st.Rebuild != nil || st.Lag != 0 {
		t.Fatalf("status after rebuild: %+v", st)
	}

	// Reset to the start, with a runner running: it replays into the
	// wiped read model.
	runRunner(t, r)
	handled.Store(0)
	if err := r.Reset(ctx, "totals", eventstore.Position{}); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "replay after reset", 60*time.Second, func() bool { return handled.Load() >= 6000 })
	waitModel(t, db.Pool, tt, db.Schema, 60*time.Second)
}

// A rebuild of 200,000 events calls its progress callback and keeps the
// heap flat: one batch in memory at a time, never the log.
func TestRebuild200kFlatMemory(t *testing.T) {
	if os.Getenv("STRATA_FAULT_TESTS") != "1" {
		t.Skip("fault test: set STRATA_FAULT_TESTS=1")
	}
	s, db := newStore(t)
	ctx := context.Background()
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	const n = 200_000
	bulkAppend(t, s, n, 20, strings.Repeat("x", 300)) // ~65 MB of payload in all
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: tt, Reset: tt.reset}}, nil)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	start := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	})
	var calls int
	var last projection.Progress
	began := time.Now()
	err := r.Rebuild(ctx, "totals", func(p projection.Progress) { calls++; last = p })
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak.Load()) - int64(start)
	t.Logf("rebuilt %d events in %v (%.0f events/s), %d progress reports; heap in use %d MB at start, peak %d MB (+%d MB)",
		last.Done, time.Since(began).Round(time.Millisecond), last.Rate, calls, start>>20, peak.Load()>>20, growth>>20)
	if last.Done != n || !last.Finished || calls < 5 {
		t.Fatalf("progress: %+v after %d calls", last, calls)
	}
	if growth > 32<<20 {
		t.Fatalf("heap grew by %d MB during a rebuild of %d events (~%d MB of payload)", growth>>20, n, n*330>>20)
	}
	waitModel(t, db.Pool, tt, db.Schema, time.Minute)
}

// PostgreSQL is restarted while a runner works and writers append: the
// runner reconnects by itself and the read model ends up exactly right.
func TestPostgresRestartRunnerRecovers(t *testing.T) {
	if os.Getenv("STRATA_FAULT_TESTS") != "1" {
		t.Skip("fault test: set STRATA_FAULT_TESTS=1")
	}
	s, db := newStore(t)
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: tt, Partitions: 2}},
		&projection.Config{LeaseTTL: 2 * time.Second, PollInterval: 200 * time.Millisecond, MaxRetryBackoff: time.Second})
	runRunner(t, r)
	stopWriters := writers(s, 3, "acct", 2*time.Millisecond)
	pgtest.WaitFor(t, "the runner at work", 30*time.Second, func() bool { return statusOf(t, r, "totals").EventsHandled > 200 })
	restartPostgres(t)
	time.Sleep(2 * time.Second) // writers and runner keep going after the restart
	stopWriters()
	waitModel(t, db.Pool, tt, db.Schema, 2*time.Minute)
	st := statusOf(t, r, "totals")
	if st.DeadLetters != 0 || st.State != projection.StateRunning {
		t.Fatalf("status after restart: %+v", st)
	}
	appendSome(t, s, "after", 3, 3, "Tick")
	waitModel(t, db.Pool, tt, db.Schema, time.Minute)
}

func restartPostgres(t *testing.T) {
	t.Helper()
	versions, _ := filepath.Glob("/etc/postgresql/*")
	if len(versions) != 1 {
		t.Fatalf("cannot find the PostgreSQL cluster: %v", versions)
	}
	restart := func() error {
		out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", filepath.Base(versions[0]), "main", "restart").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		// Leave the server running whatever happened.
		if exec.Command("pg_isready", "-h", "127.0.0.1").Run() != nil {
			_ = restart()
		}
	})
	if err := restart(); err != nil {
		t.Fatal(err)
	}
}

// A rebuild of an empty log has nothing to wait for: it finishes at once
// (not at the next one-second status check), with a final report and no
// rebuild left recorded.
func TestRebuildEmptyLog(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	noop := projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })
	r := projection.NewRunner(s, []projection.Projection{{Name: "empty", Handler: noop, Partitions: 3}}, nil)
	var last projection.Progress
	start := time.Now()
	if err := r.Rebuild(ctx, "empty", func(p projection.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el >= time.Second {
		t.Fatalf("rebuild of an empty log took %v", el)
	}
	if !last.Finished || last.Done != 0 || last.Total != 0 {
		t.Fatalf("last report: %+v", last)
	}
	if st := statusOf(t, r, "empty"); st.Rebuild != nil {
		t.Fatalf("status after rebuild: %+v", st)
	}
}

// A Rebuild beside a Runner of the same process that owns the projection's
// partition (so the Runner's subscription does the replay) reports real
// progress: the events as they are handled, at a rate, and it returns soon
// after the replay reaches the head rather than a status poll later.
func TestRebuildProgressWhileRunnerOwnsIt(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	bulkAppend(t, s, 3000, 10, "")
	slow := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		time.Sleep(300 * time.Microsecond) // about a second of replay in all
		return tt.Handle(ctx, tx, e)
	})
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: slow, Reset: tt.reset, BatchSize: 100}},
		&projection.Config{PollInterval: 50 * time.Millisecond})
	runRunner(t, r)
	waitModel(t, db.Pool, tt, db.Schema, 60*time.Second)

	var reports []projection.Progress
	started := time.Now()
	if err := r.Rebuild(ctx, "totals", func(p projection.Progress) { reports = append(reports, p) }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(started)
	waitModel(t, db.Pool, tt, db.Schema, time.Second)
	last := reports[len(reports)-1]
	if !last.Finished || last.Done != 3000 || last.Total != 3000 {
		t.Fatalf("last report %+v", last)
	}
	var midway bool
	for _, p := range reports[:len(reports)-1] {
		if p.Done > 0 && p.Done < p.Total && p.Rate > 0 {
			midway = true
		}
	}
	if !midway {
		t.Fatalf("no report showed the replay under way (after %s): %+v", took, reports)
	}
}

package projection_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// A projection process is SIGKILLed at random moments, 20 times, while
// writers append; each time a new process takes over (with the same
// owner name, as a restarted pod would, so without waiting for the lease).
// The read model must equal the one computed from the events: no lost and
// no doubled effect (the handler also refuses out-of-order versions, and
// nothing may be parked).
func TestSIGKILLAtRandomMomentsExactlyOnce(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	cfg := childConfig{URL: db.URL, Schema: db.Schema, Name: "totals", Table: "totals", Owner: "worker-1", Partitions: 2, BatchSize: 25, LeaseTTL: 2 * time.Second}
	stopWriters := writers(s, 4, "acct", 0)
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: tt, Partitions: 2}}, nil)
	for i := range 20 {
		before := statusOf(t, r, "totals").EventsHandled
		c := startChild(t, cfg)
		// Kill it at a random moment once it is at work (committing
		// batches), so that kills land in the middle of batches.
		pgtest.WaitFor(t, "the child to handle events", 30*time.Second, func() bool { return statusOf(t, r, "totals").EventsHandled > before })
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		c.kill()
		t.Logf("kill %d: %d events handled so far", i+1, statusOf(t, r, "totals").EventsHandled)
	}
	appended := stopWriters()
	startChild(t, cfg)
	waitModel(t, db.Pool, tt, db.Schema, 90*time.Second)
	if dl, _ := r.DeadLetters(context.Background(), "totals"); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
	t.Logf("%d appends, all in the read model exactly once", appended)
}

// Three processes run one projection: at every moment at most one owns
// it; when the owner is SIGKILLed another takes over within about the
// lease TTL (1s here), from the last committed checkpoint; the read model
// ends up exactly right.
func TestThreeProcessesOneOwnerTakeover(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: tt}}, nil)
	procs := map[string]*child{}
	for _, o := range []string{"A", "B", "C"} {
		procs[o] = startChild(t, childConfig{URL: db.URL, Schema: db.Schema, Name: "totals", Table: "totals", Owner: o, Partitions: 1, BatchSize: 50, LeaseTTL: time.Second})
	}
	stopWriters := writers(s, 2, "acct", 2*time.Millisecond)
	defer stopWriters()
	owner := func() string {
		st := statusOf(t, r, "totals")
		if len(st.Owners) > 1 {
			t.Fatalf("more than one owner: %v", st.Owners)
		}
		if len(st.Owners) == 0 {
			return ""
		}
		return st.Owners[0]
	}
	var first string
	pgtest.WaitFor(t, "an owner", 30*time.Second, func() bool { first = owner(); return first != "" })
	alive := []string{"A", "B", "C"}
	for range 2 {
		cur := owner()
		if cur == "" || !slices.Contains(alive, cur) {
			t.Fatalf("owner %q is not a live process (%v)", cur, alive)
		}
		handled := statusOf(t, r, "totals").EventsHandled
		procs[cur].kill()
		killed := time.Now()
		alive = slices.DeleteFunc(alive, func(o string) bool { return o == cur })
		var next string
		pgtest.WaitFor(t, "a takeover", 15*time.Second, func() bool {
			next = owner()
			return next != "" && next != cur
		})
		took := time.Since(killed)
		pgtest.WaitFor(t, "progress after takeover", 30*time.Second, func() bool { return statusOf(t, r, "totals").EventsHandled > handled })
		t.Logf("killed owner %s; %s took over after %v", cur, next, took)
		if took > 8*time.Second {
			t.Fatalf("takeover took %v with a 1s lease", took)
		}
	}
	stopWriters()
	waitModel(t, db.Pool, tt, db.Schema, 60*time.Second)
}

// A projection of 4 partitions split across two processes builds the
// same read model as one process running it alone.
func TestPartitionsAcrossTwoProcessesSameReadModel(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	split := newTotals(t, db.Pool, db.Schema, "split")
	single := newTotals(t, db.Pool, db.Schema, "single")
	r := projection.NewRunner(s, []projection.Projection{{Name: "split", Handler: split, Partitions: 4}}, nil)
	for _, o := range []string{"A", "B"} {
		startChild(t, childConfig{URL: db.URL, Schema: db.Schema, Name: "split", Table: "split", Owner: o, Partitions: 4, BatchSize: 20, LeaseTTL: time.Second})
	}
	pgtest.WaitFor(t, "both processes owning partitions", 30*time.Second, func() bool {
		st := statusOf(t, r, "split")
		return slices.Equal(st.Owners, []string{"A", "B"})
	})
	stopWriters := writers(s, 3, "acct", time.Millisecond)
	time.Sleep(2 * time.Second) // the length of the workload, not a synchronisation
	stopWriters()
	waitModel(t, db.Pool, split, db.Schema, 60*time.Second)
	// Status is read from leases: a lease renewal delayed on a loaded
	// machine may hand a partition over for a moment, so wait for the
	// split rather than read it once.
	var st projection.Status
	pgtest.WaitFor(t, "both processes still owning partitions", 30*time.Second, func() bool {
		st = statusOf(t, r, "split")
		return slices.Equal(st.Owners, []string{"A", "B"})
	})
	for _, p := range st.Partitions {
		if p.EventsHandled == 0 {
			t.Fatalf("partition %d handled nothing: %+v", p.Partition, st.Partitions)
		}
	}

	one := projection.NewRunner(s, []projection.Projection{{Name: "single", Handler: single}}, nil)
	runRunner(t, one)
	waitModel(t, db.Pool, single, db.Schema, 60*time.Second)
	if a, b := split.read(t, db.Pool), single.read(t, db.Pool); !equalRows(a, b) {
		t.Fatalf("split and single read models differ: %s", diffRows(a, b))
	}
}

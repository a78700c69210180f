package workflow_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/workflow"
)

// Figures, each beside a baseline doing the same work in the same run
// (the machine is shared, so the ratio is what matters):
//
//	go test -run '^$' -bench . -benchtime 1x ./workflow/
//
// Reactions: 2,000 events already in the log, each for its own instance;
// the workflow's decision records one event (appended to the instance's
// stream) per input. Baseline: a projection (one partition) whose handler
// appends one event per input to a stream of its own with AppendTx in the
// batch's transaction — the same appends, exactly once, with no routing,
// no instance lock, no state. Rounds alternate, three of each.
//
// DeadlineLatency: 500 deadlines due over 2.5s (scheduled seconds
// before), fired by one process's deadline worker with the wall clock;
// the latency is from the due time to the commit of the reaction that
// fired it. There is no baseline: the figure to compare is a poller's
// interval (half of it on average).

const benchInputs = 2000

func BenchmarkReactions(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	// The inputs: OrderPlaced in streams in-0 … in-N.
	for chunk := 0; chunk < benchInputs; chunk += 100 {
		for i := chunk; i < chunk+100; i++ {
			ne, _ := e.reg.Encode(OrderPlaced{Order: strconv.Itoa(i), TTL: 1})
			if _, err := e.store.Append(ctx, "in-"+strconv.Itoa(i), eventstore.NoStream, ne); err != nil {
				b.Fatal(err)
			}
		}
	}
	one := func(s payState, in workflow.Input) (workflow.Decision, error) {
		if s.Started {
			return workflow.Decision{}, nil
		}
		return workflow.Decision{Events: []any{Started{Order: in.Key}}}, nil
	}
	var wfRates, pjRates []float64
	for round := range 3 {
		// The workflow.
		wf := workflow.Workflow[payState]{Name: "bench" + strconv.Itoa(round), Categories: []string{"in"},
			Route: payRoute, Decide: one, Evolve: payEvolve}
		r, err := workflow.New(e.store, e.reg, wf, &workflow.Config{NoDeadlines: true, PollInterval: 50 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		rate := timeUntil(b, r.Run, func() bool {
			return e.count(b, `SELECT count(*) FROM %s.workflow_instances WHERE workflow = $1`, wf.Name) == benchInputs
		})
		wfRates = append(wfRates, rate)

		// The projection doing the same appends.
		name := "bench" + strconv.Itoa(round)
		h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev eventstore.Event) error {
			ne, err := e.reg.Encode(Started{Order: ev.StreamID})
			if err != nil {
				return err
			}
			_, err = e.store.AppendTx(ctx, tx, "p"+name+"-"+ev.StreamID, eventstore.NoStream, ne)
			return err
		})
		runner := projection.NewRunner(e.store, []projection.Projection{{Name: name, Handler: h, Categories: []string{"in"}}},
			&projection.Config{PollInterval: 50 * time.Millisecond})
		rate = timeUntil(b, runner.Run, func() bool {
			return e.count(b, `SELECT count(*) FROM %s.streams WHERE category = $1`, "p"+name) == benchInputs
		})
		pjRates = append(pjRates, rate)
	}
	wf, pj := median(wfRates), median(pjRates)
	b.ReportMetric(wf, "workflow-reactions/s")
	b.ReportMetric(pj, "projection-events/s")
	b.ReportMetric(wf/pj, "ratio")
	b.Logf("reactions/s, %d inputs, 3 interleaved rounds (median): workflow %.0f (rounds %.0f), projection baseline %.0f (rounds %.0f), ratio %.2f",
		benchInputs, wf, wfRates, pj, pjRates, wf/pj)
}

// timeUntil runs run until done holds and returns benchInputs per second
// of the time that took.
func timeUntil(b *testing.B, run func(context.Context) error, done func() bool) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() { _ = run(ctx) })
	for !done() {
		if time.Since(start) > 5*time.Minute {
			b.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(start)
	cancel()
	wg.Wait()
	return float64(benchInputs) / d.Seconds()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func BenchmarkDeadlineLatency(b *testing.B) {
	e := newEnv(b)
	const n = 500
	var mu sync.Mutex
	var late []time.Duration
	r := e.runner(b, &workflow.Config{OnReaction: func(rc workflow.Reaction) {
		if rc.Deadline != nil {
			mu.Lock()
			late = append(late, rc.FiredAt.Sub(rc.Deadline.DueAt))
			mu.Unlock()
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	// The orders are placed at once; their deadlines come due over 2.5s,
	// starting 8s after each order's reaction (after every reaction, so
	// that the figure is the firing's, not the reactions' backlog).
	for i := range n {
		e.append(b, "order-"+strconv.Itoa(i), OrderPlaced{Order: strconv.Itoa(i), TTL: 8000 + int64(i)*5})
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		got := len(late)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deadlines fired", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(late)
	p50, p99 := late[n/2], late[n*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.Logf("deadline latency (due → reaction committed), %d deadlines: p50 %s, p99 %s, max %s",
		n, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), late[n-1].Round(100*time.Microsecond))
}

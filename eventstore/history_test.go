package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/migrations"
)

// The history check: concurrent appenders and readers of a few streams
// through the fault proxy, with random cuts at the worst moment (after a
// statement was forwarded, before its answer), every call recorded and
// the history checked twice: against the log itself (every acknowledged
// append stored exactly once with the versions it returned, nothing of an
// append that returned an error, no event of unknown origin, versions
// gapless) and, with porcupine, against a model of a stream as a
// versioned register with expected-version appends (linearizability).

// TestAppendHistory is the bounded run of the normal suite: about 1,000
// calls with about 10 cuts, against the shared test server.
func TestAppendHistory(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	runHistory(t, historyRun{url: db.URL, schema: db.Schema, direct: db.Pool, ops: 1000, cutP: 0.01, minCuts: 3})
}

// TestAppendHistoryFaults is the long run, with STRATA_FAULT_TESTS=1: at
// least 20,000 calls and 50 cuts, and one restart (immediate stop, as a
// crash) of a private Postgres cluster the test starts itself.
func TestAppendHistoryFaults(t *testing.T) {
	if os.Getenv("STRATA_FAULT_TESTS") != "1" {
		t.Skip("set STRATA_FAULT_TESTS=1 for the long fault run")
	}
	c := pgtest.StartCluster(t)
	ctx := context.Background()
	direct, err := pgxpool.New(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if err := migrations.Apply(ctx, direct, "strata"); err != nil {
		t.Fatal(err)
	}
	runHistory(t, historyRun{url: c.URL, schema: "strata", direct: direct, ops: 20_000, cutP: 0.006, minCuts: 50, restart: c})
}

type historyRun struct {
	url     string
	schema  string
	direct  *pgxpool.Pool // to the server, not through the proxy
	ops     int
	cutP    float64 // chance that a statement is cut
	minCuts int64
	restart *pgtest.Cluster // restarted half-way, when set
}

const (
	historyStreams = 3
	historyWorkers = 8
)

// histInput is a call: an append of n events with an expected version,
// or a read of the stream's version.
type histInput struct {
	stream   int
	read     bool
	expected eventstore.ExpectedVersion
	n        int64
}

// histOutput is what a call that counts returned: the version (an append
// that stored its events, or a read), or a conflict.
type histOutput struct {
	conflict bool
	version  int64
}

// histCall is one recorded call.
type histCall struct {
	in         histInput
	ids        []uuid.UUID
	start, end int64
	version    int64
	err        error
}

// countingHandler counts the store's log records by message.
type countingHandler struct {
	resolved, resolvedStored, unknown atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "outcome resolved"):
		h.resolved.Add(1)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "stored" && a.Value.Bool() {
				h.resolvedStored.Add(1)
			}
			return true
		})
	case strings.Contains(r.Message, "outcome unknown"):
		h.unknown.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func runHistory(t *testing.T, r historyRun) {
	ctx := context.Background()
	app := "strata-history-" + uuid.NewString()[:8]
	cfg, err := pgxpool.ParseConfig(r.url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cc := cfg.ConnConfig
	cc.Host, cc.Port, cc.TLSConfig, cc.Fallbacks = p.Host(), p.Port(), nil, nil
	cc.RuntimeParams["application_name"] = app
	cc.ConnectTimeout = 5 * time.Second
	cfg.MaxConns = 2 * historyWorkers
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	logs := &countingHandler{}
	s := eventstore.New(pool, &eventstore.Config{Schema: r.schema, ResolveTimeout: 30 * time.Second, Logger: slog.New(logs)})
	streams := make([]string, historyStreams)
	for i := range streams {
		streams[i] = fmt.Sprintf("hist-%d", i)
	}

	p.SetCut(&faultproxy.Cut{Types: "E", Probability: r.cutP, Random: true})
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	var (
		mu       sync.Mutex
		calls    []histCall
		done     atomic.Int64
		restarts int
		wg       sync.WaitGroup
	)
	if r.restart != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(r.ops/2) {
				time.Sleep(10 * time.Millisecond)
			}
			if err := r.restart.Restart(); err != nil {
				t.Errorf("restart: %v", err)
				return
			}
			restarts++
		}()
	}
	for w := range historyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(base.UnixNano())))
			known := make([]int64, historyStreams) // the last version this worker saw
			var mine []histCall
			defer func() {
				mu.Lock()
				calls = append(calls, mine...)
				mu.Unlock()
			}()
			for done.Add(1) <= int64(r.ops) {
				in := histInput{stream: rng.IntN(historyStreams)}
				stream := streams[in.stream]
				cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				if rng.IntN(5) == 0 {
					in.read = true
					c := histCall{in: in, start: now()}
					v, err := s.StreamVersion(cctx, stream)
					c.end = now()
					cancel()
					if errors.Is(err, eventstore.ErrStreamNotFound) {
						v, err = 0, nil
					}
					c.version, c.err = v, err
					if err == nil {
						known[in.stream] = v
					}
					mine = append(mine, c)
					continue
				}
				switch k := rng.IntN(20); {
				case k < 12:
					in.expected = eventstore.Exactly(known[in.stream])
					if known[in.stream] == 0 {
						in.expected = eventstore.NoStream
					}
				case k < 15:
					in.expected = eventstore.Any
				case k < 17:
					in.expected = eventstore.NoStream
				default:
					in.expected = eventstore.StreamExists
				}
				in.n = 1 + rng.Int64N(3)
				events := make([]eventstore.NewEvent, in.n)
				for i := range events {
					events[i] = ev("Noted", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				}
				events = withIDs(events...)
				c := histCall{in: in, start: now()}
				for _, e := range events {
					c.ids = append(c.ids, e.ID)
				}
				res, err := s.Append(cctx, stream, in.expected, events...)
				c.end = now()
				cancel()
				c.version, c.err = res.Version, err
				var conflict *eventstore.ConflictError
				switch {
				case err == nil:
					known[in.stream] = res.Version
				case errors.As(err, &conflict):
					known[in.stream] = conflict.Actual
				default:
					time.Sleep(time.Millisecond) // the server may be down
				}
				mine = append(mine, c)
			}
		}()
	}
	wg.Wait()
	if appends, statements := eventstore.CombinerStats(s); statements > 0 {
		t.Logf("the append combiner sent %d appends in %d combined statements", appends, statements)
	}
	p.SetCut(nil)
	pool.Close()
	p.Close()
	// Every server process of the run has ended (held ones too) before the
	// log is read.
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := r.direct.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d server processes of the run still running after a minute", n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The log as it is.
	type stored struct {
		stream  string
		version int64
	}
	log := map[uuid.UUID]stored{}
	rows, err := r.direct.Query(ctx, `SELECT event_id, stream_id, version FROM `+pgx.Identifier{r.schema, "events"}.Sanitize()+` ORDER BY stream_id, version`)
	if err != nil {
		t.Fatal(err)
	}
	perStream := map[string]int64{}
	for rows.Next() {
		var id uuid.UUID
		var e stored
		if err := rows.Scan(&id, &e.stream, &e.version); err != nil {
			t.Fatal(err)
		}
		log[id] = e
		if e.version != perStream[e.stream]+1 {
			t.Errorf("stream %s: version %d follows %d", e.stream, e.version, perStream[e.stream])
		}
		perStream[e.stream] = e.version
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for stream, v := range perStream {
		var sv int64
		if err := r.direct.QueryRow(ctx, `SELECT version FROM `+pgx.Identifier{r.schema, "streams"}.Sanitize()+` WHERE stream_id = $1`, stream).Scan(&sv); err != nil || sv != v {
			t.Errorf("stream %s: streams table says version %d (%v), the log %d", stream, sv, err, v)
		}
	}

	// Every call against the log, and the history for porcupine.
	var history []porcupine.Operation
	var ambiguous, applied, failed, oks int
	seen := map[uuid.UUID]bool{}
	for i, c := range calls {
		if c.in.read {
			if c.err == nil {
				history = append(history, porcupine.Operation{ClientId: i, Input: c.in, Call: c.start, Output: histOutput{version: c.version}, Return: c.end})
			}
			continue
		}
		n := 0
		var last stored
		for j, id := range c.ids {
			e, ok := log[id]
			if !ok {
				continue
			}
			n++
			seen[id] = true
			last = e
			if e.stream != streams[c.in.stream] || (j > 0 && e.version != log[c.ids[j-1]].version+1) {
				t.Errorf("append %v: event %d stored as %+v", c.in, j, e)
			}
		}
		if n != 0 && n != len(c.ids) {
			t.Errorf("append %v (%v): %d of its %d events are stored", c.in, c.err, n, len(c.ids))
			continue
		}
		var conflict *eventstore.ConflictError
		switch {
		case c.err == nil:
			oks++
			if n == 0 || last.version != c.version {
				t.Errorf("append %v returned nil and version %d, but the log holds %d of its events (last version %d)", c.in, c.version, n, last.version)
			}
			history = append(history, porcupine.Operation{ClientId: i, Input: c.in, Call: c.start, Output: histOutput{version: c.version}, Return: c.end})
		case errors.Is(c.err, eventstore.ErrAmbiguous):
			ambiguous++
			if n > 0 {
				// It happened, some time after it began.
				applied++
				history = append(history, porcupine.Operation{ClientId: i, Input: c.in, Call: c.start, Output: histOutput{version: last.version}, Return: 1 << 62})
			}
		case n > 0:
			t.Errorf("append %v returned %v, but its events are stored", c.in, c.err)
		case errors.As(c.err, &conflict):
			history = append(history, porcupine.Operation{ClientId: i, Input: c.in, Call: c.start, Output: histOutput{conflict: true}, Return: c.end})
		default:
			failed++
		}
	}
	for id, e := range log {
		if !seen[id] {
			t.Errorf("event %s (%+v) in the log is no call's", id, e)
		}
	}

	model := porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			parts := make([][]porcupine.Operation, historyStreams)
			for _, op := range h {
				s := op.Input.(histInput).stream
				parts[s] = append(parts[s], op)
			}
			return parts
		},
		Init: func() any { return int64(0) },
		Step: func(state, input, output any) (bool, any) {
			v, in, out := state.(int64), input.(histInput), output.(histOutput)
			if in.read {
				return out.version == v, v
			}
			holds := false
			switch {
			case in.expected == eventstore.Any:
				holds = true
			case in.expected == eventstore.NoStream:
				holds = v == 0
			case in.expected == eventstore.StreamExists:
				holds = v > 0
			default:
				holds = int64(in.expected) == v
			}
			if out.conflict {
				return !holds, v
			}
			return holds && out.version == v+in.n, v + in.n
		},
		Equal: func(a, b any) bool { return a == b },
		DescribeOperation: func(input, output any) string {
			return fmt.Sprintf("%+v -> %+v", input, output)
		},
	}
	switch res := porcupine.CheckOperationsTimeout(model, history, 2*time.Minute); res {
	case porcupine.Ok:
	case porcupine.Illegal:
		t.Errorf("the history of %d calls is not linearizable", len(history))
	default:
		t.Errorf("porcupine could not decide within 2 minutes (%v)", res)
	}
	t.Logf("%d calls (%d acknowledged appends, %d linearized), %d cuts, %d restarts; %d outcomes resolved after a lost connection (%d stored), %d ambiguous (%d of them stored); %d appends failed otherwise (nothing stored); %d events in %d streams",
		len(calls), oks, len(history), p.Cuts(), restarts, logs.resolved.Load(), logs.resolvedStored.Load(), ambiguous, applied, failed, len(log), len(perStream))
	if p.Cuts() < r.minCuts {
		t.Errorf("%d cuts, want at least %d", p.Cuts(), r.minCuts)
	}
	if r.restart != nil && restarts != 1 {
		t.Errorf("%d restarts, want 1", restarts)
	}
}

package projection

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// Projection states reported by Status.
const (
	// StateNew: the projection has never run.
	StateNew = "new"
	// StateIdle: no process holds a lease on it.
	StateIdle = "idle"
	// StateRunning: at least one process is running it and none is failing.
	StateRunning = "running"
	// StateRebuilding: a Rebuild has begun and not caught up yet.
	StateRebuilding = "rebuilding"
	// StateFailing: a partition's handler is failing (being retried,
	// paused by the subscription's circuit breaker, or stopped under the
	// eventstore.Stop policy).
	StateFailing = "failing"
	// StateStopped: every process that ran it has stopped.
	StateStopped = "stopped"
)

// Status describes one projection.
type Status struct {
	// Name and Version identify the projection.
	Name string
	// Version is the projection's version.
	Version int
	// Subscription is the name of its eventstore subscription.
	Subscription string
	// State is one of the State constants; the worst of its partitions.
	State string
	// Checkpoint is the lowest checkpoint of its partitions.
	Checkpoint eventstore.Position
	// Head is the position of the last event of the log.
	Head eventstore.Position
	// Lag is the number of events, matching its filter, committed after its
	// checkpoints (each partition's count is capped at 1,000,000).
	Lag int64
	// LagCapped says a partition's count stopped at its cap: the
	// projection is at least Lag events behind.
	LagCapped bool
	// LagTime is how long ago the oldest of those events was recorded.
	LagTime time.Duration
	// Owners lists the processes holding its partitions' leases.
	Owners []string
	// LastError is the last handler error of a failing partition.
	LastError string
	// DeadLetters counts its parked events.
	DeadLetters int64
	// EventsHandled counts the events it has handled since it began.
	EventsHandled int64
	// Rebuild is set while a Rebuild is in progress.
	Rebuild *RebuildStatus
	// StoppedHere is the error that stopped it in this process (under the
	// eventstore.Stop policy), if any.
	StoppedHere error
	// HeldBy is the oldest open transaction on the server, when the
	// projection lags and that transaction is older than Config.HorizonAge:
	// gap-safe readers cannot pass it until it ends (see
	// eventstore.HorizonHolder; pg_terminate_backend(PID) ends it).
	HeldBy *eventstore.HorizonHolder
	// Partitions holds each partition's status.
	Partitions []eventstore.SubscriptionStatus
}

// RebuildStatus describes a rebuild in progress.
type RebuildStatus struct {
	// StartedAt is when it began.
	StartedAt time.Time
	// Target is the last event committed when it began; it is done once
	// every partition has read past it.
	Target eventstore.Position
	// Total is how many events it had to replay.
	Total int64
}

// Status reports every projection of the Runner, in the order given to
// NewRunner: checkpoint, head, lag, state, owners, last error, dead
// letters, and the open transaction holding readers back, if any.
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	if r.err != nil {
		return nil, r.err
	}
	head, err := r.store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("projection: status: %w", err)
	}
	sts, err := r.status(ctx, r.entries, false)
	for i := range sts {
		sts[i].Head = head.Position
	}
	return sts, err
}

// status reports the given projections, as Status does, without their
// Head (which Check does not need). probe counts the lag as a health check
// needs it, at a bounded cost: over at most HealthMaxLag+1 entries of the
// log after each checkpoint (eventstore.Store.ProbeSubscription).
func (r *Runner) status(ctx context.Context, entries []*entry, probe bool) ([]Status, error) {
	rebuilds := map[string]*RebuildStatus{}
	rows, err := r.store.Pool().Query(ctx, r.sql.listRebuilds)
	if err != nil {
		return nil, fmt.Errorf("projection: status: %w", err)
	}
	var sub string
	var rb RebuildStatus
	var tx int64
	_, err = pgx.ForEachRow(rows, []any{&sub, &tx, &rb.Target.Seq, &rb.Total, &rb.StartedAt}, func() error {
		rb.Target.TxID = uint64(tx)
		c := rb
		rebuilds[sub] = &c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projection: status: %w", err)
	}
	out := make([]Status, 0, len(entries))
	lagging := false
	for _, e := range entries {
		var parts []eventstore.SubscriptionStatus
		if probe {
			parts, err = r.store.ProbeSubscription(ctx, e.sub, eventstore.ProbeOptions{MaxLag: r.cfg.HealthMaxLag + 1})
		} else {
			parts, err = r.store.SubscriptionStatuses(ctx, e.sub)
		}
		if err != nil {
			return nil, fmt.Errorf("projection %q: status: %w", e.p.Name, err)
		}
		st := Status{Name: e.p.Name, Version: e.p.Version, Subscription: e.sub, Partitions: parts, Rebuild: rebuilds[e.sub]}
		e.mu.Lock()
		st.StoppedHere = e.stopped
		e.mu.Unlock()
		summarize(&st)
		if st.Lag > 0 {
			lagging = true
		}
		out = append(out, st)
	}
	if lagging {
		holder, err := r.store.Horizon(ctx, r.cfg.HorizonAge)
		if err != nil {
			return nil, fmt.Errorf("projection: status: %w", err)
		}
		for i := range out {
			if out[i].Lag > 0 {
				out[i].HeldBy = holder
			}
		}
	}
	return out, nil
}

// summarize fills in a Status from its partitions.
func summarize(st *Status) {
	if len(st.Partitions) == 0 {
		st.State = StateNew
		return
	}
	states := map[string]bool{}
	for i, p := range st.Partitions {
		if i == 0 || p.Checkpoint.Less(st.Checkpoint) {
			st.Checkpoint = p.Checkpoint
		}
		st.Lag += p.Lag
		st.LagCapped = st.LagCapped || p.LagCapped
		st.LagTime = max(st.LagTime, p.LagTime)
		st.DeadLetters += p.DeadLetters
		st.EventsHandled += p.EventsHandled
		if p.Owner != "" && !slices.Contains(st.Owners, p.Owner) {
			st.Owners = append(st.Owners, p.Owner)
		}
		state := p.State
		if state == eventstore.BreakerOpen || state == eventstore.BreakerHalfOpen {
			state = "failing" // paused by its circuit breaker; LastError says so
		}
		if p.LastError != "" && (st.LastError == "" || state == "failing") {
			st.LastError = p.LastError
		}
		states[state] = true
	}
	slices.Sort(st.Owners)
	switch {
	case states["failing"]:
		st.State = StateFailing
	case st.Rebuild != nil:
		st.State = StateRebuilding
	case states["running"]:
		st.State = StateRunning
	case states["stopped"] && !states["idle"]:
		st.State = StateStopped
	default:
		st.State = StateIdle
	}
}

// DeadLetters lists a projection's parked events, in the order they were
// parked.
func (r *Runner) DeadLetters(ctx context.Context, name string) ([]eventstore.DeadLetter, error) {
	e, err := r.entry(name)
	if err != nil {
		return nil, err
	}
	return r.store.DeadLetters(ctx, e.sub)
}

// RetryDeadLetters asks the processes running a projection to run its
// parked events again, each stream's in order (streamID "" for all
// streams), and returns how many were marked. A retried event that now
// succeeds leaves the dead letters and its stream flows again.
func (r *Runner) RetryDeadLetters(ctx context.Context, name, streamID string) (int64, error) {
	e, err := r.entry(name)
	if err != nil {
		return 0, err
	}
	return r.store.RetryDeadLetters(ctx, e.sub, streamID)
}

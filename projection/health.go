package projection

import (
	"context"
	"fmt"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/telemetry"
)

// Check reports a projection's health for a telemetry.HealthHandler, from
// its Status:
//
//   - Failing when it stopped in this process (the eventstore.Stop policy),
//     when this Runner's Run is not running it, when a partition's handler
//     is failing (with its last error), when an open transaction has held
//     its reader back for more than Config.HealthMaxHorizonAge (as
//     eventstore.Store.Horizon sees it), or when its status cannot be read;
//   - Lagging while it is rebuilding, when it is more than
//     Config.HealthMaxLag events or Config.HealthMaxLagTime behind the log
//     (counted over at most HealthMaxLag+1 entries of the log, so that a
//     probe costs the same at any size of the log),
//     or when it has dead letters;
//   - Ready otherwise.
func (r *Runner) Check(ctx context.Context, name string) telemetry.Health {
	e, err := r.entry(name)
	if err != nil {
		return telemetry.Health{State: telemetry.Failing, Reason: err.Error()}
	}
	e.mu.Lock()
	stopped, running := e.stopped, e.running > 0
	e.mu.Unlock()
	if stopped != nil {
		return telemetry.Health{State: telemetry.Failing, Reason: "stopped: " + stopped.Error()}
	}
	if !running {
		return telemetry.Health{State: telemetry.Failing, Reason: fmt.Sprintf("projection %q is not running in this process", name)}
	}
	sts, err := r.status(ctx, []*entry{e}, true)
	if err != nil {
		return telemetry.Health{State: telemetry.Failing, Reason: err.Error()}
	}
	return r.health(sts[0])
}

// holder describes the transaction holding readers back.
func holder(h *eventstore.HorizonHolder) string {
	if h.Hidden {
		return fmt.Sprintf("transaction %d of another role, %d transaction IDs behind, for %s", h.Xmin, h.Behind, h.Age.Round(time.Second))
	}
	return fmt.Sprintf("transaction of backend %d, open %s", h.PID, h.Age.Round(time.Second))
}

// health maps a running projection's Status to its Health.
func (r *Runner) health(st Status) telemetry.Health {
	switch {
	case st.State == StateFailing:
		return telemetry.Health{State: telemetry.Failing, Reason: "handler failing: " + st.LastError}
	case st.HeldBy != nil && st.HeldBy.Age > r.cfg.HealthMaxHorizonAge:
		return telemetry.Health{State: telemetry.Failing, Reason: "readers held back by " + holder(st.HeldBy), Since: time.Now().Add(-st.HeldBy.Age)}
	case st.Rebuild != nil:
		return telemetry.Health{State: telemetry.Lagging, Reason: fmt.Sprintf("rebuilding: %d events behind", st.Lag), Since: st.Rebuild.StartedAt}
	case st.Lag > r.cfg.HealthMaxLag || st.LagCapped || st.LagTime > r.cfg.HealthMaxLagTime:
		reason := fmt.Sprintf("%d events behind, the oldest recorded %s ago", st.Lag, st.LagTime.Round(time.Millisecond))
		if st.LagCapped {
			reason = fmt.Sprintf("more than %d events behind, the oldest recorded %s ago", r.cfg.HealthMaxLag, st.LagTime.Round(time.Millisecond))
		}
		if st.HeldBy != nil {
			reason += " (readers held back by " + holder(st.HeldBy) + ")"
		}
		return telemetry.Health{State: telemetry.Lagging, Reason: reason, Since: time.Now().Add(-st.LagTime)}
	case st.DeadLetters > 0:
		return telemetry.Health{State: telemetry.Lagging, Reason: fmt.Sprintf("%d dead letters", st.DeadLetters)}
	}
	return telemetry.Health{State: telemetry.Ready}
}

// HealthChecks returns a check per projection, keyed by its subscription
// name ("projection:NAME"), for telemetry.NewHealthHandler.
func (r *Runner) HealthChecks() map[string]telemetry.HealthFunc {
	out := make(map[string]telemetry.HealthFunc, len(r.entries))
	for _, e := range r.entries {
		name := e.p.Name
		out[e.sub] = func(ctx context.Context) telemetry.Health { return r.Check(ctx, name) }
	}
	return out
}

package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// State is a worker's health: Ready, Lagging or Failing, in increasing
// order of severity. The zero State is Ready.
type State int

const (
	// Ready: the worker is running and caught up.
	Ready State = iota
	// Lagging: the worker is running but behind (more than its threshold of
	// events or seconds), or has parked events as dead letters. It is
	// working; restarting it would not help.
	Lagging
	// Failing: the worker is not doing its job: its handler or broker keeps
	// failing, it stopped, or it does not run in this process.
	Failing
)

// String returns "ready", "lagging" or "failing".
func (s State) String() string {
	switch s {
	case Ready:
		return "ready"
	case Lagging:
		return "lagging"
	case Failing:
		return "failing"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText writes the State as String does, so that JSON shows
// "ready", "lagging" or "failing".
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *State) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ready":
		*s = Ready
	case "lagging":
		*s = Lagging
	case "failing":
		*s = Failing
	default:
		return fmt.Errorf("telemetry: unknown health state %q", b)
	}
	return nil
}

// Health is one worker's health, as a HealthFunc reports it. The zero
// Health is Ready.
type Health struct {
	// State is Ready, Lagging or Failing.
	State State `json:"state"`
	// Reason says why the worker is not Ready, for people ("lag 1200
	// events, 35s", "publish to \"order\": connection refused"); empty when
	// Ready.
	Reason string `json:"reason,omitempty"`
	// Since is when the current state began, when known (zero otherwise).
	Since time.Time `json:"since,omitzero"`
}

// HealthFunc reports a worker's health. It should answer within the
// HealthHandler's timeout and report Failing when ctx ends first.
type HealthFunc func(ctx context.Context) Health

// HealthConfig configures a HealthHandler. The zero value (or nil) means
// every default.
type HealthConfig struct {
	// Timeout bounds each check; a check still running then counts as
	// Failing ("timed out"). Default 5s.
	Timeout time.Duration
	// LaggingUnavailable makes a Lagging check answer 503 like a Failing
	// one. Default false: Lagging answers 200, since a lagging worker is
	// working and restarting it would not help.
	LaggingUnavailable bool
}

// HealthHandler serves a set of named health checks over HTTP. Create it
// with NewHealthHandler and mount it where a load balancer or Kubernetes
// probe looks (for example "/healthz").
type HealthHandler struct {
	checks map[string]HealthFunc
	cfg    HealthConfig
}

// HealthReport is the JSON document a HealthHandler serves.
type HealthReport struct {
	// State is the worst State of the checks (Ready when there are none).
	State State `json:"state"`
	// Checks holds each check's Health by name.
	Checks map[string]Health `json:"checks"`
}

// NewHealthHandler returns a handler running checks, keyed by the names
// the report shows (such as "projection:order_summary" or "relay"). cfg
// may be nil.
func NewHealthHandler(checks map[string]HealthFunc, cfg *HealthConfig) *HealthHandler {
	var c HealthConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	cp := make(map[string]HealthFunc, len(checks))
	for name, f := range checks {
		if f != nil {
			cp[name] = f
		}
	}
	return &HealthHandler{checks: cp, cfg: c}
}

// Check runs every check at once, each bounded by the configured Timeout,
// and returns the report.
func (h *HealthHandler) Check(ctx context.Context) HealthReport {
	rep := HealthReport{Checks: make(map[string]Health, len(h.checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, f := range h.checks {
		wg.Go(func() {
			hl := h.run(ctx, f)
			mu.Lock()
			rep.Checks[name] = hl
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, hl := range rep.Checks {
		rep.State = max(rep.State, hl.State)
	}
	return rep
}

// run runs one check under the timeout; a check that does not return in
// time is left to finish on its own and reported Failing.
func (h *HealthHandler) run(ctx context.Context, f HealthFunc) Health {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	done := make(chan Health, 1)
	go func() { done <- f(ctx) }()
	select {
	case hl := <-done:
		return hl
	case <-ctx.Done():
		return Health{State: Failing, Reason: "health check timed out: " + ctx.Err().Error()}
	}
}

// ServeHTTP answers with the report as JSON: status 200 when every check
// is Ready or Lagging, 503 when one is Failing (or Lagging, with
// LaggingUnavailable).
func (h *HealthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := h.Check(r.Context())
	code := http.StatusOK
	if rep.State == Failing || (rep.State == Lagging && h.cfg.LaggingUnavailable) {
		code = http.StatusServiceUnavailable
	}
	body, err := json.Marshal(rep)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

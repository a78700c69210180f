package dashboard

import (
	"context"
	"sync"
	"time"

	"github.com/strata-go/strata/eventstore"
)

// snapshot is one reading of the store: the log's head, the horizon and
// every subscription partition, all from queries whose cost does not grow
// with the log (see sample).
type snapshot struct {
	At       time.Time
	Head     eventstore.Head
	Horizon  *eventstore.HorizonHolder
	Statuses []eventstore.SubscriptionStatus
	Took     time.Duration
}

// point is one sample of one subscription, its partitions added up.
type point struct {
	At         time.Time
	Lag        int64   // events behind, estimated where a partition's count was capped
	LagSeconds float64 // the oldest unhandled event's age, the worst partition's
	Handled    int64   // events handled since the subscription began
}

// maxPoints bounds one subscription's history, whatever the sampling
// rate (the overview samples on request too).
const maxPoints = 4000

// history keeps the samples of the last window, per subscription, and the
// latest snapshot.
type history struct {
	window, interval time.Duration

	sampling sync.Mutex // one sample at a time; the others wait and reuse it

	mu     sync.Mutex
	last   *snapshot
	points map[string][]point
}

func newHistory(window, interval time.Duration) *history {
	return &history{window: window, interval: interval, points: map[string][]point{}}
}

// latest returns the last snapshot if it is younger than maxAge.
func (h *history) latest(now time.Time, maxAge time.Duration) *snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last != nil && now.Sub(h.last.At) < maxAge {
		return h.last
	}
	return nil
}

// record adds snap's points and forgets those older than the window, and
// the subscriptions that are gone.
func (h *history) record(snap *snapshot, lags map[string]point) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = snap
	cut := snap.At.Add(-h.window)
	for name, p := range lags {
		ps := append(h.points[name], p)
		i := 0
		for i < len(ps) && ps[i].At.Before(cut) {
			i++
		}
		if len(ps)-i > maxPoints {
			i = len(ps) - maxPoints
		}
		h.points[name] = ps[i:]
	}
	for name := range h.points {
		if _, ok := lags[name]; !ok {
			delete(h.points, name)
		}
	}
}

// series returns a copy of a subscription's points, oldest first.
func (h *history) series(name string) []point {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]point(nil), h.points[name]...)
}

// freshness is how old a snapshot the overview shows without sampling
// again.
const freshness = 2 * time.Second

// current returns the snapshot the overview shows: while Run samples,
// its last (unless two intervals passed without one: Run is stuck on a
// slow query); otherwise one no older than freshness, sampling if need be.
func (s *Server) current(ctx context.Context) (*snapshot, error) {
	maxAge := min(freshness, s.cfg.SampleInterval)
	if s.running.Load() > 0 {
		maxAge = 2 * s.cfg.SampleInterval
	}
	if snap := s.hist.latest(s.cfg.Now(), maxAge); snap != nil {
		return snap, nil
	}
	return s.sample(ctx, false)
}

// sample reads the store and records the points. Unless force, a snapshot
// taken while it waited for another sample is reused.
//
// Its queries read the subscriptions' rows, the log's head and the
// horizon; each partition's lag is counted over at most Config.MaxLag
// entries of the log after its checkpoint (eventstore.ProbeSubscription,
// an index range scan of events_log_idx), so the cost depends on the
// number of partitions and MaxLag, never on the size of the log.
func (s *Server) sample(ctx context.Context, force bool) (*snapshot, error) {
	started := s.cfg.Now()
	s.hist.sampling.Lock()
	defer s.hist.sampling.Unlock()
	if !force {
		if snap := s.hist.latest(s.cfg.Now(), s.cfg.Now().Sub(started)+time.Millisecond); snap != nil && !snap.At.Before(started) {
			return snap, nil
		}
	}
	t0 := time.Now()
	head, err := s.store.Head(ctx)
	if err != nil {
		return nil, err
	}
	sts, err := s.store.ProbeSubscription(ctx, "", eventstore.ProbeOptions{MaxLag: s.cfg.MaxLag})
	if err != nil {
		return nil, err
	}
	hz, err := s.store.Horizon(ctx, s.cfg.HorizonAge)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{At: s.cfg.Now(), Head: head, Horizon: hz, Statuses: sts, Took: time.Since(t0)}
	lags := map[string]point{}
	for _, st := range sts {
		p := lags[st.Name]
		p.At = snap.At
		p.Lag += s.lagOf(head, st)
		p.LagSeconds = max(p.LagSeconds, st.LagTime.Seconds())
		p.Handled += st.EventsHandled
		lags[st.Name] = p
	}
	s.hist.record(snap, lags)
	return snap, nil
}

// lagOf is a partition's lag in events: the count, or where the count
// stopped at Config.MaxLag entries, an estimate — the log entries between
// its checkpoint and the head, times the share of the examined entries
// its filter and partition select.
func (s *Server) lagOf(head eventstore.Head, st eventstore.SubscriptionStatus) int64 {
	if !st.LagCapped {
		return st.Lag
	}
	behind := head.Position.Seq - st.Checkpoint.Seq
	est := int64(float64(behind) * float64(st.Lag) / float64(s.cfg.MaxLag))
	return max(est, st.Lag)
}

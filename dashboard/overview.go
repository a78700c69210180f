package dashboard

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-go/strata/eventstore"
)

// overviewPage is the data of overview.html.
type overviewPage struct {
	page
	Health    health
	Head      eventstore.Head
	HeadAge   time.Duration
	Horizon   *eventstore.HorizonHolder
	Subs      []subView
	SampledAt time.Time
	Took      time.Duration
	Window    time.Duration
}

// health is the verdict at a glance: "ok", "warn" or "bad", and why.
type health struct {
	Level    string
	Problems []string
}

func (h *health) add(level, format string, args ...any) {
	if level == "bad" || h.Level == "ok" || h.Level == "" {
		h.Level = level
	}
	h.Problems = append(h.Problems, fmt.Sprintf(format, args...))
}

// subView is one subscription in the overview: its partitions added up
// (the worst state, the largest lag time) and each of them.
type subView struct {
	Name         string
	Kind         string
	State        string
	Level        string
	Partitions   int
	Owners       []string
	Lag          int64
	LagEstimated bool
	LagTime      time.Duration
	Rate         float64
	RateKnown    bool
	DeadLetters  int64
	Handled      int64
	Chart        chart
	Parts        []partView
}

// partView is one partition of a subscription.
type partView struct {
	eventstore.SubscriptionStatus
	LagShown     int64
	LagEstimated bool
	LeaseExpired bool
}

// stateRank orders states from the best to the worst.
var stateRank = map[string]int{"running": 0, "idle": 1, "stopped": 2, "failing": 3}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	snap, err := s.current(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	now := s.cfg.Now()
	p := overviewPage{page: s.page(r, "Overview"), Head: snap.Head, Horizon: snap.Horizon,
		SampledAt: snap.At, Took: snap.Took, Window: s.cfg.History, Health: health{Level: "ok"}}
	if !snap.Head.RecordedAt.IsZero() {
		p.HeadAge = now.Sub(snap.Head.RecordedAt)
	}
	var cur *subView
	for _, st := range snap.Statuses {
		if cur == nil || cur.Name != st.Name {
			p.Subs = append(p.Subs, subView{Name: st.Name, Kind: kindOf(st.Name), State: st.State, Level: "ok"})
			cur = &p.Subs[len(p.Subs)-1]
		}
		pv := partView{SubscriptionStatus: st, LagShown: s.lagOf(snap.Head, st), LagEstimated: st.LagCapped,
			LeaseExpired: st.Owner != "" && st.LeaseUntil.Before(now)}
		cur.Parts = append(cur.Parts, pv)
		cur.Partitions = st.Partitions
		if stateRank[st.State] > stateRank[cur.State] {
			cur.State = st.State
		}
		if st.Owner != "" && !slices.Contains(cur.Owners, st.Owner) {
			cur.Owners = append(cur.Owners, st.Owner)
		}
		cur.Lag += pv.LagShown
		cur.LagEstimated = cur.LagEstimated || pv.LagEstimated
		cur.LagTime = max(cur.LagTime, st.LagTime)
		cur.DeadLetters += st.DeadLetters
		cur.Handled += st.EventsHandled
	}
	for i := range p.Subs {
		sv := &p.Subs[i]
		series := s.hist.series(sv.Name)
		sv.Rate, sv.RateKnown = rate(series)
		sv.Chart = lagChart(series, now, s.cfg.History)
		switch {
		case sv.State == "failing":
			sv.Level = "bad"
			p.Health.add("bad", "%s is failing", visible(sv.Name))
		case sv.DeadLetters > 0:
			sv.Level = "bad"
		case sv.LagTime > time.Minute:
			sv.Level = "warn"
			p.Health.add("warn", "%s is %s behind", visible(sv.Name), age(sv.LagTime))
		}
		if sv.DeadLetters > 0 {
			p.Health.add("bad", "%s has %s", visible(sv.Name), plural(sv.DeadLetters, "dead letter", "dead letters"))
		}
	}
	if h := snap.Horizon; h != nil {
		p.Health.add("warn", "readers held back for %s by an open transaction", age(h.Age))
	}
	s.render(w, r, "overview.html", p)
}

// kindOf tells what kind of worker a subscription belongs to, by the
// prefix its package gives its name.
func kindOf(name string) string {
	switch {
	case strings.HasPrefix(name, "projection:"):
		return "projection"
	case strings.HasPrefix(name, "outbox:"):
		return "relay"
	case strings.HasPrefix(name, "pubsub/"):
		return "Pub/Sub group"
	case strings.HasPrefix(name, "workflow:"):
		return "workflow"
	}
	return "subscription"
}

// rate is the events handled per second over the last minute of series
// (or what it has of it).
func rate(series []point) (float64, bool) {
	if len(series) < 2 {
		return 0, false
	}
	last := series[len(series)-1]
	first := series[0]
	for _, p := range slices.Backward(series[:len(series)-1]) {
		first = p
		if last.At.Sub(p.At) >= time.Minute {
			break
		}
	}
	dt := last.At.Sub(first.At).Seconds()
	if dt <= 0 || last.Handled < first.Handled {
		return 0, false // a reset moved the count back
	}
	return float64(last.Handled-first.Handled) / dt, true
}

// chart is a lag chart drawn as an SVG polyline.
type chart struct {
	W, H   int
	Points string // "x,y x,y …" in the SVG's coordinates
	N      int    // how many points
	Max    int64  // the lag at the top of the chart
	Latest int64
}

// lagChart draws series over the window ending at now: x is time, y the
// lag in events from 0 (bottom) to the largest in the window, or 10 (top). At
// most one point per horizontal pixel is kept (the largest lag there).
func lagChart(series []point, now time.Time, window time.Duration) chart {
	c := chart{W: 300, H: 48, Max: 10} // a lag of a few events stays near the bottom
	for _, p := range series {
		c.Max = max(c.Max, p.Lag)
	}
	if len(series) > 0 {
		c.Latest = series[len(series)-1].Lag
	}
	var b strings.Builder
	lastX, lastY := -1, 0
	flush := func() {
		if lastX >= 0 {
			b.WriteString(strconv.Itoa(lastX) + "," + strconv.Itoa(lastY) + " ")
			c.N++
		}
	}
	for _, p := range series {
		x := c.W - int(float64(c.W)*now.Sub(p.At).Seconds()/window.Seconds())
		x = min(max(x, 0), c.W)
		y := c.H - 2 - int(float64(c.H-4)*float64(p.Lag)/float64(c.Max))
		if x == lastX {
			lastY = min(lastY, y) // the larger lag is the smaller y
			continue
		}
		flush()
		lastX, lastY = x, y
	}
	flush()
	c.Points = strings.TrimSpace(b.String())
	return c
}

package dashboard

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
)

func TestLagChart(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var series []point
	for i := range 3600 { // a point a second for an hour: more than pixels
		series = append(series, point{At: now.Add(-time.Hour + time.Duration(i)*time.Second), Lag: int64(i % 100)})
	}
	c := lagChart(series, now, time.Hour)
	if c.N > c.W+1 || c.N < c.W/2 {
		t.Errorf("%d points drawn on %d pixels", c.N, c.W)
	}
	if c.Max != 99 || c.Latest != 99 {
		t.Errorf("max %d, latest %d", c.Max, c.Latest)
	}
	for _, p := range strings.Fields(c.Points) {
		var x, y int
		if _, err := fmt.Sscanf(p, "%d,%d", &x, &y); err != nil || x < 0 || x > c.W || y < 0 || y > c.H {
			t.Fatalf("point %q outside the chart", p)
		}
	}
	if c := lagChart(nil, now, time.Hour); c.N != 0 || c.Points != "" {
		t.Errorf("empty series drawn as %+v", c)
	}
	// A point older than the window sits on the left edge.
	if c := lagChart([]point{{At: now.Add(-2 * time.Hour), Lag: 5}, {At: now, Lag: 5}}, now, time.Hour); !strings.HasPrefix(c.Points, "0,") {
		t.Errorf("old point at %q", c.Points)
	}
}

func TestRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if _, ok := rate([]point{{At: t0, Handled: 5}}); ok {
		t.Error("a rate from one point")
	}
	r, ok := rate([]point{{At: t0, Handled: 0}, {At: t0.Add(30 * time.Second), Handled: 300}, {At: t0.Add(90 * time.Second), Handled: 900}})
	if !ok || r != 10 {
		t.Errorf("rate %v %v, want 10/s over the last minute", r, ok)
	}
	if _, ok := rate([]point{{At: t0, Handled: 100}, {At: t0.Add(time.Second), Handled: 0}}); ok {
		t.Error("a rate across a reset")
	}
}

func TestLagEstimate(t *testing.T) {
	s := &Server{cfg: Config{MaxLag: 100}}
	head := eventstore.Head{Position: eventstore.Position{TxID: 9, Seq: 1_000_100}}
	st := eventstore.SubscriptionStatus{Checkpoint: eventstore.Position{TxID: 5, Seq: 100}, Lag: 25, LagCapped: true}
	if got := s.lagOf(head, st); got != 250_000 {
		t.Errorf("a quarter of a million entries behind: %d", got)
	}
	st.LagCapped = false
	if got := s.lagOf(head, st); got != 25 {
		t.Errorf("an exact count: %d", got)
	}
}

func TestVisible(t *testing.T) {
	for in, want := range map[string]string{
		"order-42":           "order-42",
		"<script>":           "<script>", // HTML is escaped by the template, not here
		"évènement-1":        "évènement-1",
		"user-\u202etxt.exe": `"user-\u202etxt.exe"`,
		"a\x1b[31mb":         `"a\x1b[31mb"`,
		"zero\u200bwidth":    `"zero\u200bwidth"`,
		"bad-\xff":           `"bad-\xff"`,
	} {
		if got := visible(in); got != want {
			t.Errorf("visible(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestTraceCycle: events whose causation IDs name each other (stored
// metadata is anyone's) are all drawn, each once.
func TestTraceCycle(t *testing.T) {
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	at := time.Now()
	events := []eventstore.Event{
		{ID: a, StreamID: "x-1", Version: 1, Type: "A", RecordedAt: at, Metadata: eventstore.Metadata{CausationID: b.String()}},
		{ID: b, StreamID: "x-1", Version: 2, Type: "B", RecordedAt: at.Add(time.Millisecond), Metadata: eventstore.Metadata{CausationID: a.String()}},
		{ID: c, StreamID: "x-2", Version: 1, Type: "C", RecordedAt: at.Add(2 * time.Millisecond), Metadata: eventstore.Metadata{CausationID: c.String()}},
	}
	var p tracePage
	layoutTrace(&p, events)
	if len(p.Nodes) != 3 {
		t.Fatalf("%d nodes drawn, want 3", len(p.Nodes))
	}
	if got := p.Text(); !strings.Contains(got, "A  x-1@1") || !strings.Contains(got, "└─ B  x-1@2") || !strings.Contains(got, "C  x-2@1") {
		t.Errorf("trace:\n%s", got)
	}
}

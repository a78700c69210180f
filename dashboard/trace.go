package dashboard

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"time"

	"github.com/strata-go/strata/eventstore"
)

// maxTraceEvents is the most events a trace page reads.
const maxTraceEvents = 2000

// traceNode is one event of a trace, placed in the drawing: its row, its
// depth in the causal tree, its place on the timeline.
type traceNode struct {
	Event      eventstore.Event
	Depth      int
	Offset     time.Duration // since the trace's first event
	AfterCause time.Duration // since its cause (HasCause)
	HasCause   bool
	Line       string // the `strata trace` line: prefix and branch

	X, Y, TX int // tree x, row y, timeline x
	PX, PY   int // the cause's tree point (HasCause)
	PTX      int // the cause's timeline x (HasCause)
	Color    string

	caused []*traceNode
}

// tracePage is the data of trace.html.
type tracePage struct {
	page
	ID        string
	Nodes     []*traceNode // in drawing order: depth first, roots in log order
	Streams   int
	Duration  time.Duration
	Truncated bool
	// The drawing's geometry.
	W, H, TreeW, TimeX, TimeW int
	Ticks                     []tick
}

// tick is a mark of the timeline's axis.
type tick struct {
	X     int
	Label string
}

const (
	traceRowH   = 30
	traceIndent = 22
	traceTreeW  = 430
	traceTimeW  = 420
)

// palette colours events by category (on a dark or light background).
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f"}

func colorOf(category string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(category))
	return palette[h.Sum32()%uint32(len(palette))]
}

func (s *Server) tracePage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	p := tracePage{page: s.page(r, "Trace"), ID: id}
	if id == "" {
		s.render(w, r, "trace.html", &p)
		return
	}
	p.Title = "Trace " + visible(id)
	events, err := s.store.ReadCorrelated(r.Context(), id, maxTraceEvents+1)
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	if len(events) == 0 {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no event has correlation ID %q", id))
		return
	}
	if len(events) > maxTraceEvents {
		events, p.Truncated = events[:maxTraceEvents], true
	}
	layoutTrace(&p, events)
	s.render(w, r, "trace.html", &p)
}

// layoutTrace arranges events (in log order) into their causal tree, as
// `strata trace` prints it: an event sits under the event its causation
// ID names; the others are roots, in log order. Then it places each on
// the drawing: one row per event, depth first; the tree on the left, the
// timeline (time since the first event) on the right.
func layoutTrace(p *tracePage, events []eventstore.Event) {
	first, last := events[0].RecordedAt, events[0].RecordedAt
	byID := make(map[string]*traceNode, len(events))
	streams := map[string]bool{}
	for _, e := range events {
		if e.RecordedAt.Before(first) {
			first = e.RecordedAt
		}
		if e.RecordedAt.After(last) {
			last = e.RecordedAt
		}
		byID[e.ID.String()] = &traceNode{Event: e, Color: colorOf(e.Category())}
		streams[e.StreamID] = true
	}
	p.Streams, p.Duration = len(streams), last.Sub(first)
	var roots []*traceNode
	for _, e := range events {
		n := byID[e.ID.String()]
		n.Offset = e.RecordedAt.Sub(first)
		cause, ok := byID[e.Metadata.CausationID]
		if !ok || cause == n {
			roots = append(roots, n)
			continue
		}
		n.HasCause, n.AfterCause = true, e.RecordedAt.Sub(cause.Event.RecordedAt)
		cause.caused = append(cause.caused, n)
	}
	p.TreeW, p.TimeW = traceTreeW, traceTimeW
	p.TimeX = p.TreeW + 30
	span := max(p.Duration, time.Millisecond)
	timeX := func(d time.Duration) int { return p.TimeX + int(float64(p.TimeW)*float64(d)/float64(span)) }
	seen := map[*traceNode]bool{}
	var walk func(n, parent *traceNode, depth int, prefix, branch string)
	walk = func(n, parent *traceNode, depth int, prefix, branch string) {
		if seen[n] { // a causation cycle: each event is drawn once
			return
		}
		seen[n] = true
		row := len(p.Nodes)
		n.Depth, n.Line = depth, prefix+branch
		n.X = 16 + depth*traceIndent
		n.Y = 40 + row*traceRowH
		n.TX = timeX(n.Offset)
		if parent != nil {
			n.PX, n.PY, n.PTX = parent.X, parent.Y, parent.TX
		}
		p.Nodes = append(p.Nodes, n)
		child := prefix
		switch branch {
		case "├─ ":
			child += "│  "
		case "└─ ":
			child += "   "
		}
		for i, c := range n.caused {
			b := "├─ "
			if i == len(n.caused)-1 {
				b = "└─ "
			}
			walk(c, n, depth+1, child, b)
		}
	}
	for _, r := range roots {
		walk(r, nil, 0, "", "")
	}
	// Events in a causation cycle (each naming another as its cause) are
	// reached from no root: each such cycle is drawn from its first event.
	for _, e := range events {
		if n := byID[e.ID.String()]; !seen[n] {
			n.HasCause = false
			walk(n, nil, 0, "", "")
		}
	}
	p.W = p.TimeX + p.TimeW + 60
	p.H = 40 + len(p.Nodes)*traceRowH + 10
	for i := range 5 {
		d := span * time.Duration(i) / 4
		p.Ticks = append(p.Ticks, tick{X: timeX(d), Label: "+" + age(d)})
	}
}

// traceText is the trace as `strata trace` prints it, one line per event.
func (p *tracePage) Text() string {
	var b strings.Builder
	for _, n := range p.Nodes {
		timing := "+" + age(n.Offset)
		if n.HasCause {
			timing += " (" + age(n.AfterCause) + " after its cause)"
		} else if c := n.Event.Metadata.CausationID; c != "" {
			timing += " (caused by " + visible(c) + ")"
		}
		fmt.Fprintf(&b, "%s%s  %s@%d  %s\n", n.Line, visible(n.Event.Type), visible(n.Event.StreamID), n.Event.Version, timing)
	}
	return b.String()
}

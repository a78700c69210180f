package dashboard

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/causaltree"
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

// layoutTrace places events (in log order) on the drawing in their causal
// tree (internal/causaltree, as `strata trace` prints it): one row per
// event, depth first; the tree on the left, the timeline (time since the
// first event) on the right.
func layoutTrace(p *tracePage, events []eventstore.Event) {
	tree := causaltree.New(events)
	p.Streams, p.Duration = tree.Streams, tree.Last.Sub(tree.First)
	p.TreeW, p.TimeW = traceTreeW, traceTimeW
	p.TimeX = p.TreeW + 30
	span := max(p.Duration, time.Millisecond)
	timeX := func(d time.Duration) int { return p.TimeX + int(float64(p.TimeW)*float64(d)/float64(span)) }
	placed := make(map[*causaltree.Node]*traceNode, len(tree.Nodes))
	for row, c := range tree.Nodes {
		n := &traceNode{Event: c.Event, Depth: c.Depth, Offset: c.Offset, Line: c.Line, Color: colorOf(c.Event.Category())}
		n.X = 16 + c.Depth*traceIndent
		n.Y = 40 + row*traceRowH
		n.TX = timeX(c.Offset)
		if parent := placed[c.Cause]; parent != nil {
			n.HasCause, n.AfterCause = true, c.AfterCause()
			n.PX, n.PY, n.PTX = parent.X, parent.Y, parent.TX
		}
		placed[c] = n
		p.Nodes = append(p.Nodes, n)
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

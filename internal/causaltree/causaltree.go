// Package causaltree arranges the events of one correlation ID into their
// causal tree: the one shape `strata trace` prints and the dashboard's
// trace page draws.
//
// Contract: New takes events in log order. An event sits under the event
// its causation ID names when that event is among them and is not the
// event itself; the others are roots, in log order, children in log order
// under their cause. Events whose causes form a cycle (each naming another
// as its cause) would be reached from no root: the first of them in log
// order not yet placed becomes a root, without a cause, and so on until
// every event is placed. The result is a forest: every event is in it
// exactly once, Nodes lists it depth first (the drawing order), and
// Line is the tree's branches drawn before the event ("├─ ", "│  ",
// "└─ ", empty for a root).
package causaltree

import (
	"time"

	"github.com/strata-go/strata/eventstore"
)

// Node is one event in the tree.
type Node struct {
	Event eventstore.Event
	// Cause is the event this one sits under; nil for a root.
	Cause *Node
	// Caused are the events sitting under this one, in log order.
	Caused []*Node
	// Depth is 0 for a root.
	Depth int
	// Line is what is drawn before the event on its line: the branches of
	// the tree (its ancestors' continuations and its own branch).
	Line string
	// Offset is the time from the tree's first event.
	Offset time.Duration
}

// AfterCause is the time from the event's cause to it (0 for a root).
func (n *Node) AfterCause() time.Duration {
	if n.Cause == nil {
		return 0
	}
	return n.Event.RecordedAt.Sub(n.Cause.Event.RecordedAt)
}

// Tree is the causal tree of a list of events.
type Tree struct {
	// Roots are the events without a cause among the events, in log order.
	Roots []*Node
	// Nodes are all events, depth first: each root in log order followed by
	// what it caused.
	Nodes []*Node
	// First and Last are the earliest and the latest recording time.
	First, Last time.Time
	// Streams is how many streams the events are of.
	Streams int
}

// New arranges events, in log order, into their causal tree. events must
// not be empty.
func New(events []eventstore.Event) *Tree {
	t := &Tree{First: events[0].RecordedAt, Last: events[0].RecordedAt}
	byID := make(map[string]*Node, len(events))
	nodes := make([]*Node, len(events))
	streams := map[string]bool{}
	for i, e := range events {
		if e.RecordedAt.Before(t.First) {
			t.First = e.RecordedAt
		}
		if e.RecordedAt.After(t.Last) {
			t.Last = e.RecordedAt
		}
		nodes[i] = &Node{Event: e}
		byID[e.ID.String()] = nodes[i]
		streams[e.StreamID] = true
	}
	t.Streams = len(streams)
	for _, n := range nodes {
		n.Offset = n.Event.RecordedAt.Sub(t.First)
		if cause, ok := byID[n.Event.Metadata.CausationID]; ok && cause != n {
			n.Cause = cause
			cause.Caused = append(cause.Caused, n)
		}
	}
	seen := make(map[*Node]bool, len(nodes))
	for _, n := range nodes {
		if n.Cause == nil {
			t.Roots = append(t.Roots, n)
			t.walk(n, seen, 0, "", "")
		}
	}
	for _, n := range nodes {
		if seen[n] {
			continue
		}
		// Reached from no root: n's causes form a cycle. Cut n from its
		// cause and draw it as a root.
		c := n.Cause
		for i, s := range c.Caused {
			if s == n {
				c.Caused = append(c.Caused[:i:i], c.Caused[i+1:]...)
				break
			}
		}
		n.Cause = nil
		t.Roots = append(t.Roots, n)
		t.walk(n, seen, 0, "", "")
	}
	return t
}

// walk places n and what it caused, depth first.
func (t *Tree) walk(n *Node, seen map[*Node]bool, depth int, prefix, branch string) {
	seen[n] = true
	n.Depth, n.Line = depth, prefix+branch
	t.Nodes = append(t.Nodes, n)
	switch branch {
	case "├─ ":
		prefix += "│  "
	case "└─ ":
		prefix += "   "
	}
	for i, c := range n.Caused {
		b := "├─ "
		if i == len(n.Caused)-1 {
			b = "└─ "
		}
		t.walk(c, seen, depth+1, prefix, b)
	}
}

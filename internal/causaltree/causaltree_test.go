package causaltree_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/causaltree"
)

// events makes one event per name, in log order, a millisecond apart;
// causes maps a name to the name its causation ID names ("?" names an
// event outside the list).
func events(names []string, causes map[string]string) []eventstore.Event {
	ids := map[string]uuid.UUID{}
	for _, n := range names {
		ids[n] = uuid.New()
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []eventstore.Event
	for i, n := range names {
		e := eventstore.Event{ID: ids[n], Type: n, StreamID: "s-" + n[:1], RecordedAt: t0.Add(time.Duration(i) * time.Millisecond)}
		switch c := causes[n]; c {
		case "":
		case "?":
			e.Metadata.CausationID = uuid.NewString()
		default:
			e.Metadata.CausationID = ids[c].String()
		}
		out = append(out, e)
	}
	return out
}

func draw(t *causaltree.Tree) string {
	var b strings.Builder
	for _, n := range t.Nodes {
		b.WriteString(n.Line + n.Event.Type + "\n")
	}
	return b.String()
}

func TestTree(t *testing.T) {
	tr := causaltree.New(events([]string{"a", "b", "c", "d", "e", "f"},
		map[string]string{"b": "a", "c": "b", "d": "a", "e": "?", "f": "e"}))
	want := "a\n├─ b\n│  └─ c\n└─ d\ne\n└─ f\n"
	if got := draw(tr); got != want {
		t.Errorf("drawn:\n%s\nwant:\n%s", got, want)
	}
	if len(tr.Roots) != 2 || tr.Roots[0].Event.Type != "a" || tr.Roots[1].Event.Type != "e" {
		t.Errorf("roots %v", tr.Roots)
	}
	c := tr.Nodes[2]
	if c.Depth != 2 || c.Cause.Event.Type != "b" || c.AfterCause() != time.Millisecond || c.Offset != 2*time.Millisecond {
		t.Errorf("c: depth %d, after cause %s, offset %s", c.Depth, c.AfterCause(), c.Offset)
	}
	if tr.Streams != 6 || tr.Last.Sub(tr.First) != 5*time.Millisecond {
		t.Errorf("streams %d, span %s", tr.Streams, tr.Last.Sub(tr.First))
	}
}

// TestTreeCycles: events whose causes form a cycle, an event naming
// itself and an event caused by a cycle are each placed once, and the
// tree is a forest (what was cut from its cause is a root).
func TestTreeCycles(t *testing.T) {
	tr := causaltree.New(events([]string{"x", "y", "z", "self", "p", "q"},
		map[string]string{"x": "z", "y": "x", "z": "y", "self": "self", "p": "q", "q": "p"}))
	want := "self\nx\n└─ y\n   └─ z\np\n└─ q\n"
	if got := draw(tr); got != want {
		t.Errorf("drawn:\n%s\nwant:\n%s", got, want)
	}
	count := 0
	var walk func(n *causaltree.Node, depth int)
	walk = func(n *causaltree.Node, depth int) {
		count++
		if count > 100 || n.Depth != depth {
			t.Fatalf("not a forest at %s", n.Event.Type)
		}
		for _, c := range n.Caused {
			if c.Cause != n {
				t.Errorf("%s under %s names another cause", c.Event.Type, n.Event.Type)
			}
			walk(c, depth+1)
		}
	}
	for _, r := range tr.Roots {
		if r.Cause != nil {
			t.Errorf("root %s has a cause", r.Event.Type)
		}
		walk(r, 0)
	}
	if count != 6 || len(tr.Nodes) != 6 {
		t.Errorf("%d events in the forest, %d nodes, want 6", count, len(tr.Nodes))
	}

	// An event caused by a cycle, listed before the cycle's members.
	tr = causaltree.New(events([]string{"k", "m", "n"}, map[string]string{"k": "m", "m": "n", "n": "m"}))
	if len(tr.Nodes) != 3 {
		t.Errorf("%d nodes, want 3:\n%s", len(tr.Nodes), draw(tr))
	}
}

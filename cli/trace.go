package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/causaltree"
)

// traceNode is one event of a trace with the events it caused.
type traceNode struct {
	Event jsonEvent `json:"event"`
	// Offset is the time from the trace's first event.
	OffsetMS float64 `json:"offset_ms"`
	// AfterCauseMS is the time from the event that caused it (absent for
	// a root).
	AfterCauseMS *float64     `json:"after_cause_ms,omitempty"`
	Caused       []*traceNode `json:"caused"`

	ev   eventstore.Event
	who  eventstore.Audit
	line string // the tree's branches drawn before the event
}

type traceReport struct {
	CorrelationID string       `json:"correlation_id"`
	Events        int          `json:"events"`
	Streams       int          `json:"streams"`
	DurationMS    float64      `json:"duration_ms"`
	Truncated     bool         `json:"truncated"`
	Roots         []*traceNode `json:"roots"`

	nodes []*traceNode // depth first, the printing order
}

func (s *session) traceCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "trace CORRELATION_ID",
		Short: "Print the causal tree of the events one request caused, with timings",
		Long: `Print every event carrying the correlation ID as a tree: an event sits
under the event its causation ID names; events whose cause is not an event of
the trace (a command, a request) are roots, in log order. Each line shows the
time since the trace's first event and since its cause, and who appended the
event (the application's principal and the database role). Exits with 4 when no
event carries the ID.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: s.run(func(ctx context.Context, args []string) error {
			if limit <= 0 {
				return usageErr("--limit must be positive")
			}
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			events, err := store.ReadCorrelated(ctx, args[0], limit+1)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				return notFound("no event has correlation ID %q", args[0])
			}
			rep := buildTrace(args[0], events, limit)
			who, err := audits(ctx, store, events)
			if err != nil {
				return err
			}
			rep.setAudits(who)
			if s.json {
				return writeJSON(s.out, rep)
			}
			return s.printTrace(rep)
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 10000, "read at most this many events")
	return cmd
}

// buildTrace arranges events (in log order) into their causal tree
// (internal/causaltree).
func buildTrace(id string, events []eventstore.Event, limit int) *traceReport {
	rep := &traceReport{CorrelationID: id, Roots: []*traceNode{}}
	if len(events) > limit {
		events, rep.Truncated = events[:limit], true
	}
	tree := causaltree.New(events)
	nodes := make(map[*causaltree.Node]*traceNode, len(tree.Nodes))
	for _, c := range tree.Nodes {
		n := &traceNode{Event: toJSONEvent(c.Event), OffsetMS: ms(c.Offset), Caused: []*traceNode{}, ev: c.Event, line: c.Line}
		nodes[c] = n
		if cause := nodes[c.Cause]; cause != nil {
			d := ms(c.AfterCause())
			n.AfterCauseMS = &d
			cause.Caused = append(cause.Caused, n)
		} else {
			rep.Roots = append(rep.Roots, n)
		}
		rep.nodes = append(rep.nodes, n)
	}
	rep.Events, rep.Streams, rep.DurationMS = len(events), tree.Streams, ms(tree.Last.Sub(tree.First))
	return rep
}

// setAudits records who appended each event of the trace.
func (rep *traceReport) setAudits(who map[uuid.UUID]eventstore.Audit) {
	for _, n := range rep.nodes {
		n.who = who[n.ev.ID]
		n.Event.Principal, n.Event.DBRole = n.who.Principal, n.who.Role
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *session) printTrace(rep *traceReport) error {
	fmt.Fprintf(s.out, "Trace %s: %s in %s over %s\n", display(rep.CorrelationID),
		plural(int64(rep.Events), "event", "events"), plural(int64(rep.Streams), "stream", "streams"),
		formatAge(time.Duration(rep.DurationMS*float64(time.Millisecond))))
	if rep.Truncated {
		fmt.Fprintln(s.out, "(only the first events: raise --limit to see all)")
	}
	for _, n := range rep.nodes {
		e := n.ev
		timing := fmt.Sprintf("+%s", formatAge(time.Duration(n.OffsetMS*float64(time.Millisecond))))
		if n.AfterCauseMS != nil {
			timing += fmt.Sprintf(" (%s after its cause)", formatAge(time.Duration(*n.AfterCauseMS*float64(time.Millisecond))))
		} else if c := e.Metadata.CausationID; c != "" {
			timing += " (caused by " + display(c) + ")"
		}
		if n.who.Principal != "" {
			timing += "  by " + auditLine(n.who)
		}
		fmt.Fprintf(s.out, "%s%s  %s@%d  %s\n", n.line, typeName(e), display(e.StreamID), e.Version, timing)
	}
	return nil
}

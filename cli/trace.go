package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
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

	ev  eventstore.Event
	who eventstore.Audit
}

type traceReport struct {
	CorrelationID string       `json:"correlation_id"`
	Events        int          `json:"events"`
	Streams       int          `json:"streams"`
	DurationMS    float64      `json:"duration_ms"`
	Truncated     bool         `json:"truncated"`
	Roots         []*traceNode `json:"roots"`
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

// buildTrace arranges events (in log order) into their causal tree.
func buildTrace(id string, events []eventstore.Event, limit int) *traceReport {
	rep := &traceReport{CorrelationID: id, Roots: []*traceNode{}}
	if len(events) > limit {
		events, rep.Truncated = events[:limit], true
	}
	first, last := events[0].RecordedAt, events[0].RecordedAt
	for _, e := range events {
		first, last = minTime(first, e.RecordedAt), maxTime(last, e.RecordedAt)
	}
	byID := make(map[string]*traceNode, len(events))
	streams := map[string]bool{}
	for _, e := range events {
		byID[e.ID.String()] = &traceNode{Event: toJSONEvent(e), OffsetMS: ms(e.RecordedAt.Sub(first)), Caused: []*traceNode{}, ev: e}
		streams[e.StreamID] = true
	}
	for _, e := range events {
		n := byID[e.ID.String()]
		cause, ok := byID[e.Metadata.CausationID]
		if !ok || cause == n {
			rep.Roots = append(rep.Roots, n)
			continue
		}
		d := ms(e.RecordedAt.Sub(cause.ev.RecordedAt))
		n.AfterCauseMS = &d
		cause.Caused = append(cause.Caused, n)
	}
	rep.Events, rep.Streams, rep.DurationMS = len(events), len(streams), ms(last.Sub(first))
	return rep
}

// setAudits records who appended each event of the trace.
func (rep *traceReport) setAudits(who map[uuid.UUID]eventstore.Audit) {
	var walk func(n *traceNode)
	walk = func(n *traceNode) {
		n.who = who[n.ev.ID]
		n.Event.Principal, n.Event.DBRole = n.who.Principal, n.who.Role
		for _, c := range n.Caused {
			walk(c)
		}
	}
	for _, r := range rep.Roots {
		walk(r)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (s *session) printTrace(rep *traceReport) error {
	fmt.Fprintf(s.out, "Trace %s: %s in %s over %s\n", display(rep.CorrelationID),
		plural(int64(rep.Events), "event", "events"), plural(int64(rep.Streams), "stream", "streams"),
		formatAge(time.Duration(rep.DurationMS*float64(time.Millisecond))))
	if rep.Truncated {
		fmt.Fprintln(s.out, "(only the first events: raise --limit to see all)")
	}
	var walk func(n *traceNode, prefix, branch string)
	walk = func(n *traceNode, prefix, branch string) {
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
		fmt.Fprintf(s.out, "%s%s%s  %s@%d  %s\n", prefix, branch, typeName(e), display(e.StreamID), e.Version, timing)
		child := prefix
		switch branch {
		case "├─ ":
			child += "│  "
		case "└─ ":
			child += "   "
		}
		for i, c := range n.Caused {
			b := "├─ "
			if i == len(n.Caused)-1 {
				b = "└─ "
			}
			walk(c, child, b)
		}
	}
	for _, r := range rep.Roots {
		walk(r, "", "")
	}
	return nil
}

// Package workflow runs process managers: long-running business processes
// that react to events from the log and to deadlines, each instance with
// its own event stream, exactly once and crash-safe across many
// processes.
//
// # The decider
//
// A Workflow is typed user code in the decider shape. Route says which
// instance an event is for (an order ID in the payload, a correlation
// ID); Decide says what to do about an input (an event or a fired
// deadline) given the instance's state; Evolve folds the instance's own
// events into that state. Decide and Evolve are pure: the input carries
// the time, so tests call them directly (package workflowtest runs
// given/when/then scenarios on them).
//
//	fulfilment := workflow.Workflow[Fulfilment]{
//		Name:       "fulfilment", // instances are streams "fulfilment-<key>"
//		Categories: []string{"order", "payment"},
//		Route: func(e eventstore.Event, ev any) (string, bool) {
//			switch v := ev.(type) {
//			case OrderPlaced:
//				return strings.TrimPrefix(e.StreamID, "order-"), true
//			case PaymentCompleted:
//				return v.OrderID, true
//			}
//			return "", false
//		},
//		Decide: decide, // func(Fulfilment, workflow.Input) (workflow.Decision, error)
//		Evolve: evolve, // func(Fulfilment, any) Fulfilment
//	}
//
// A Decision records the instance's own events, sends events to other
// streams (commands to aggregates, integration events a relay publishes),
// schedules and cancels deadlines, and may finish the instance, after
// which its inputs are ignored and its deadlines gone. An instance starts
// with the first decision that records an event; a decision on an
// instance that has not started and records nothing must do nothing
// (ErrInvalidDecision otherwise).
//
// # Exactly once
//
// A Runner reads the log through an eventstore subscription, the router:
// one partition, in log order, it routes each event and queues the routed
// ones per instance (table workflow_inbox) in the transaction of its
// checkpoint. Reaction workers, in as many processes as run the workflow,
// take one instance at a time under the instance's lock (a transaction
// advisory lock every writer of the instance holds) and react to its
// queued inputs in log order. One reaction — the instance's new events
// (appended expecting its version), the events it sends, its deadline
// changes, its status row and the removal of its inputs from the queue —
// commits in one transaction. A process killed at any instant neither
// loses a step nor repeats one.
//
// Every event a reaction writes has an ID derived from the workflow, the
// input and its place in the decision (a UUIDv5), and carries the input as
// its causation and the input's (or the instance's) correlation, so
// `strata trace` shows each instance's path, and an input replayed after
// a reset of the subscription is recognised by the instance's events and
// skipped.
//
// # Deadlines
//
// A deadline is a row (table workflow_deadlines) written in the
// transaction of the decision that schedules it and removed in the
// transaction of the decision that cancels it, or of the reaction to it
// when it fires: at most once and at least once, across processes. The
// deadline worker of each process fires due deadlines in due order, each
// under its instance's lock (an instance another transaction holds is
// passed over and tried again at once), and sleeps until the next one is
// due, a reaction schedules one (LISTEN/NOTIFY) or its poll interval
// passes. Overdue deadlines, after an outage, fire in due order. The time
// is Config.Clock's, so tests move a workflowtest.Clock instead of
// waiting.
//
// # Failures
//
// A decision that returns an error or panics, an event that does not
// encode, a decision that cannot be carried out: the reaction rolls back,
// and its input (queued event or deadline) is tried again after a backoff
// doubling from Config.RetryBackoff, then parked after Config.MaxAttempts
// with the inputs of its instance behind it, while other instances go on.
// RetryInputs and RetryDeadlines make the parked ones due again. Losing a
// race for a stream's order (eventstore.ErrOutOfOrder) is retried and
// never parks. Status counts instances by state, parked inputs, and due
// and overdue deadlines for `strata status`.
//
// # Telemetry
//
// Each reaction is a span (SpanReaction, a child of the trace context the
// input event carries) and counts in MetricReactions and
// MetricReactionDuration; MetricDeadlineLatency records how late each
// deadline fired.
package workflow

package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/workflow"
)

func (s *session) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade Strata's tables in --schema (idempotent)",
		Long: `Create --schema if needed and apply the migrations it has not had yet, in
one transaction, under an advisory lock: safe to run from many processes and
twice in a row. Run it as a role that may create tables.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: s.run(func(ctx context.Context, _ []string) error {
			if _, err := s.connect(ctx, true); err != nil {
				return err
			}
			if err := migrations.Apply(ctx, s.pool, s.schema); err != nil {
				return err
			}
			all, err := migrations.All()
			if err != nil {
				return err
			}
			last := all[len(all)-1]
			if s.json {
				return writeJSON(s.out, map[string]any{"schema": s.schema, "version": last.Version, "migration": last.Name})
			}
			_, err = fmt.Fprintf(s.out, "schema %q is at migration %d (%s)\n", s.schema, last.Version, last.Name)
			return err
		}),
	}
}

// statusReport is what status prints.
type statusReport struct {
	Schema         string         `json:"schema"`
	Streams        int64          `json:"streams"`
	Events         int64          `json:"events"`
	Head           string         `json:"head"`
	HeadRecordedAt *time.Time     `json:"head_recorded_at"`
	Subscriptions  []subscription `json:"subscriptions"`
	// Consumers are the deduplicating consumers (outbox.Deduplicator)
	// with messages recorded in processed_messages.
	Consumers []consumer     `json:"consumers"`
	Horizon   *horizonHolder `json:"horizon"`
	Retired   *retiredReport `json:"retired"` // retire.go
	// TransactionIDsBehind is set when the database's transaction IDs are
	// behind the log's (eventstore.TransactionIDsBehindError).
	TransactionIDsBehind *transactionIDsBehind `json:"transaction_ids_behind,omitempty"`
	Problems             []string              `json:"problems"`
	// Workflows are the workflows' instances and deadlines (none before
	// any workflow ran, or before migration 0020).
	Workflows  []workflow.Stats `json:"workflows,omitempty"`
	horizonAge time.Duration    // the threshold used
	statuses   []eventstore.SubscriptionStatus
}

// transactionIDsBehind is eventstore.TransactionIDsBehindError for --json.
type transactionIDsBehind struct {
	NextTransactionID      uint64 `json:"next_transaction_id"`
	MaxEventTransactionID  uint64 `json:"max_event_transaction_id"`
	MaxCheckpointTxID      uint64 `json:"max_checkpoint_transaction_id"`
	CheckpointSubscription string `json:"checkpoint_subscription,omitempty"`
	Epoch                  uint64 `json:"pg_resetwal_epoch"`
	Message                string `json:"message"`
}

type subscription struct {
	Name          string     `json:"name"`
	Partition     int        `json:"partition"`
	Partitions    int        `json:"partitions"`
	Checkpoint    string     `json:"checkpoint"`
	Lag           int64      `json:"lag"`
	LagSeconds    float64    `json:"lag_seconds"`
	State         string     `json:"state"`
	Owner         string     `json:"owner,omitempty"`
	LeaseUntil    *time.Time `json:"lease_until,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	EventsHandled int64      `json:"events_handled"`
	DeadLetters   int64      `json:"dead_letters"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// consumer is outbox.ConsumerStatus for --json.
type consumer struct {
	Name            string    `json:"name"`
	Processed       int64     `json:"processed"`
	LastProcessedAt time.Time `json:"last_processed_at"`
}

// horizonHolder names the backend holding readers back. Its query text is
// left out on purpose: it is another session's SQL, literals (and secrets)
// included, and the pid is enough to look it up or end it.
type horizonHolder struct {
	PID             int     `json:"pid"`
	Database        string  `json:"database"`
	ApplicationName string  `json:"application_name"`
	State           string  `json:"state"`
	AgeSeconds      float64 `json:"age_seconds"`
}

func (s *session) statusCmd() *cobra.Command {
	var horizonAge time.Duration
	var lim lagLimits
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the log, every subscription's checkpoint, lag and state, and dead letters",
		Long: `Show the log (streams, events, head position) and every subscription —
projections, relays, Pub/Sub consumer groups — partition by partition: its
checkpoint, lag in events and in time, state, owner and dead letters — and
every deduplicating consumer (outbox.Deduplicator): how many message IDs it
keeps in processed_messages and when it last processed one. When an open
transaction holds gap-safe readers back (for longer than --horizon-age), it is
named.

States: running (a process holds the partition's lease), failing (its handler
keeps failing on an event and is retrying it), stopped (the processes
running it left), idle (never run, or released).

The query text of other sessions is never printed. When the database's
transaction IDs are behind those stored in the log or a checkpoint (a
logical dump restored into a new cluster), new events would never be
delivered: status says so first, with the pg_resetwal command that fixes it.

Exits with 3 when a subscription is failing or has dead letters, lags
more than --max-lag events or --max-lag-time, or the transaction IDs are
behind the log's.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: s.run(func(ctx context.Context, _ []string) error {
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			rep, err := s.status(ctx, store, horizonAge, lim)
			if err != nil {
				return err
			}
			if s.json {
				err = writeJSON(s.out, rep)
			} else {
				err = s.printStatus(rep)
			}
			if err != nil {
				return err
			}
			if len(rep.Problems) > 0 {
				return &Error{Code: ExitProblems, Err: fmt.Errorf("status found problems: %s", strings.Join(rep.Problems, "; "))}
			}
			return nil
		}),
	}
	cmd.Flags().Int64Var(&lim.events, "max-lag", 0, "exit with 3 when a subscription lags more than this many events (0: no limit)")
	cmd.Flags().DurationVar(&lim.time, "max-lag-time", 0, "exit with 3 when a subscription's oldest unhandled event is older than this (0: no limit)")
	cmd.Flags().DurationVar(&horizonAge, "horizon-age", 5*time.Second, "report an open transaction holding readers back once it is this old")
	return cmd
}

// lagLimits are status's --max-lag and --max-lag-time (0: no limit).
type lagLimits struct {
	events int64
	time   time.Duration
}

func (s *session) status(ctx context.Context, store *eventstore.Store, horizonAge time.Duration, lim lagLimits) (*statusReport, error) {
	head, err := store.Head(ctx)
	if err != nil {
		return nil, err
	}
	sts, err := store.SubscriptionStatuses(ctx, "")
	if err != nil {
		return nil, err
	}
	hz, err := store.Horizon(ctx, horizonAge)
	if err != nil {
		return nil, err
	}
	var behind *eventstore.TransactionIDsBehindError
	if err := store.CheckTransactionIDs(ctx); err != nil {
		var ok bool
		if behind, ok = errors.AsType[*eventstore.TransactionIDsBehindError](err); !ok {
			return nil, err
		}
	}
	cons, err := outbox.Consumers(ctx, store.Pool(), s.schema)
	if err != nil {
		return nil, err
	}
	rep := &statusReport{
		Schema: s.schema, Streams: head.Streams, Events: head.Events, Head: head.Position.String(),
		Subscriptions: []subscription{}, Consumers: []consumer{}, Problems: []string{}, horizonAge: horizonAge, statuses: sts,
	}
	for _, c := range cons {
		rep.Consumers = append(rep.Consumers, consumer{Name: s.red.text(c.Consumer), Processed: c.Processed, LastProcessedAt: c.LastProcessedAt.UTC()})
	}
	if rep.Retired, err = retired(ctx, store); err != nil {
		return nil, err
	}
	if !head.RecordedAt.IsZero() {
		at := head.RecordedAt.UTC()
		rep.HeadRecordedAt = &at
	}
	if behind != nil {
		rep.TransactionIDsBehind = &transactionIDsBehind{NextTransactionID: behind.Next, MaxEventTransactionID: behind.MaxEvent,
			MaxCheckpointTxID: behind.MaxCheckpoint, CheckpointSubscription: behind.Subscription, Epoch: behind.Epoch(), Message: behind.Error()}
		rep.Problems = append(rep.Problems, fmt.Sprintf("transaction IDs are behind the log's (restored from a logical dump?): "+
			"new events are never delivered until pg_resetwal -e %d", behind.Epoch()))
	}
	if hz != nil {
		rep.Horizon = &horizonHolder{PID: hz.PID, Database: hz.Database, ApplicationName: hz.ApplicationName,
			State: hz.State, AgeSeconds: hz.Age.Seconds()}
	}
	var failing []string
	var dead int64
	for _, st := range sts {
		sub := subscription{
			Name: st.Name, Partition: st.Partition, Partitions: st.Partitions, Checkpoint: st.Checkpoint.String(),
			Lag: st.Lag, LagSeconds: st.LagTime.Seconds(), State: st.State, Owner: st.Owner, LastError: s.red.text(st.LastError),
			EventsHandled: st.EventsHandled, DeadLetters: st.DeadLetters, UpdatedAt: st.UpdatedAt.UTC(),
		}
		if st.Owner != "" {
			lu := st.LeaseUntil.UTC()
			sub.LeaseUntil = &lu
		}
		rep.Subscriptions = append(rep.Subscriptions, sub)
		name := display(st.Name)
		switch st.State {
		case "failing":
			failing = append(failing, fmt.Sprintf("%s partition %d is failing", name, st.Partition))
		case eventstore.BreakerOpen, eventstore.BreakerHalfOpen:
			failing = append(failing, fmt.Sprintf("%s partition %d is paused: circuit breaker %s", name, st.Partition, st.State))
		}
		if lim.events > 0 && st.Lag > lim.events {
			failing = append(failing, fmt.Sprintf("%s partition %d lags %d events (more than %d)", name, st.Partition, st.Lag, lim.events))
		}
		if lim.time > 0 && st.LagTime > lim.time {
			failing = append(failing, fmt.Sprintf("%s partition %d lags %s (more than %s)", name, st.Partition, formatAge(st.LagTime), lim.time))
		}
		dead += st.DeadLetters
	}
	if err := s.workflowStatus(ctx, store, rep); err != nil {
		return nil, err
	}
	rep.Problems = append(rep.Problems, failing...)
	if dead > 0 {
		rep.Problems = append(rep.Problems, plural(dead, "dead letter", "dead letters"))
	}
	return rep, nil
}

func (s *session) printStatus(rep *statusReport) error {
	now := s.cfg.Now()
	last := "no events yet"
	if rep.HeadRecordedAt != nil {
		last = "last event " + formatAge(now.Sub(*rep.HeadRecordedAt)) + " ago"
	}
	if b := rep.TransactionIDsBehind; b != nil {
		fmt.Fprintf(s.out, "WARNING: %s.\n\n", displayText(b.Message))
	}
	fmt.Fprintf(s.out, "Schema %s: %s, %s, head %s (%s)\n\n", display(rep.Schema),
		plural(rep.Streams, "stream", "streams"), plural(rep.Events, "event", "events"), rep.Head, last)
	s.printRetired(rep.Retired)
	if len(rep.statuses) == 0 {
		fmt.Fprintln(s.out, "No subscriptions.")
	} else {
		t := newTable(s.out, "SUBSCRIPTION", "PARTITION", "CHECKPOINT", "LAG", "LAG TIME", "STATE", "OWNER", "DEAD LETTERS", "HANDLED")
		var errs []string
		for _, st := range rep.statuses {
			owner := st.Owner
			if owner == "" {
				owner = "-"
			} else if st.LeaseUntil.Before(now) {
				owner += " (lease expired)"
			}
			lagTime := "-"
			if st.Lag > 0 {
				lagTime = formatAge(st.LagTime)
			}
			lag := fmt.Sprint(st.Lag)
			if st.Lag >= 1_000_000 {
				lag = "≥1000000"
			}
			t.row(st.Name, fmt.Sprintf("%d/%d", st.Partition, st.Partitions), st.Checkpoint.String(), lag, lagTime,
				st.State, owner, fmt.Sprint(st.DeadLetters), fmt.Sprint(st.EventsHandled))
			if st.LastError != "" {
				errs = append(errs, fmt.Sprintf("%s partition %d: %s", display(st.Name), st.Partition, display(s.red.text(st.LastError))))
			}
		}
		if err := t.flush(); err != nil {
			return err
		}
		for _, e := range errs {
			fmt.Fprintf(s.out, "  last error of %s\n", e)
		}
	}
	if len(rep.Consumers) > 0 {
		fmt.Fprintln(s.out)
		t := newTable(s.out, "CONSUMER", "PROCESSED", "LAST SEEN")
		for _, c := range rep.Consumers {
			t.row(c.Name, fmt.Sprint(c.Processed), formatAge(now.Sub(c.LastProcessedAt))+" ago")
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if err := s.printWorkflows(rep); err != nil {
		return err
	}
	if h := rep.Horizon; h != nil {
		fmt.Fprintf(s.out, "\nReaders are held back by backend %d (database %q, application %q, %s) with a transaction open for %s.\n",
			h.PID, h.Database, h.ApplicationName, display(h.State), formatAge(time.Duration(h.AgeSeconds*float64(time.Second))))
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(s.out, "\nProblems: %s\n", strings.Join(rep.Problems, "; "))
	}
	return nil
}

// overdueAfter is how long a deadline may be due before status calls it
// overdue (no deadline worker fired it) and a problem.
const overdueAfter = time.Minute

// workflowStatus adds the workflows' counts to rep, and their parked
// inputs and overdue deadlines to its problems.
func (s *session) workflowStatus(ctx context.Context, store *eventstore.Store, rep *statusReport) error {
	ws, err := workflow.Status(ctx, store, s.cfg.Now(), overdueAfter)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "42P01" {
		return nil // a schema from before the workflow tables
	}
	if err != nil {
		return err
	}
	rep.Workflows = ws
	for _, w := range ws {
		if w.Parked > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("workflow %s has %s", display(w.Workflow), plural(w.Parked, "parked input", "parked inputs")))
		}
		if w.Overdue > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("workflow %s has %s (due more than %s ago: is a deadline worker running?)",
				display(w.Workflow), plural(w.Overdue, "overdue deadline", "overdue deadlines"), overdueAfter))
		}
	}
	return nil
}

// printWorkflows prints the workflows' table.
func (s *session) printWorkflows(rep *statusReport) error {
	if len(rep.Workflows) == 0 {
		return nil
	}
	fmt.Fprintln(s.out)
	t := newTable(s.out, "WORKFLOW", "RUNNING", "FINISHED", "QUEUED", "PARKED", "DEADLINES", "DUE", "OVERDUE", "NEXT DUE")
	for _, w := range rep.Workflows {
		next := "-"
		if !w.NextDue.IsZero() {
			next = w.NextDue.UTC().Format(time.RFC3339)
		}
		t.row(w.Workflow, fmt.Sprint(w.Running), fmt.Sprint(w.Finished), fmt.Sprint(w.Queued), fmt.Sprint(w.Parked),
			fmt.Sprint(w.Deadlines), fmt.Sprint(w.Due), fmt.Sprint(w.Overdue), next)
	}
	return t.flush()
}

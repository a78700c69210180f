package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

type jsonDeadLetter struct {
	ID             int64     `json:"id"`
	Subscription   string    `json:"subscription"`
	Partition      int       `json:"partition"`
	Position       string    `json:"position"`
	EventID        string    `json:"event_id"`
	StreamID       string    `json:"stream_id"`
	Type           string    `json:"type"`
	Error          string    `json:"error"`
	Attempts       int       `json:"attempts"`
	BlockedBy      int64     `json:"blocked_by,omitempty"`
	RetryRequested bool      `json:"retry_requested"`
	ParkedAt       time.Time `json:"parked_at"`
}

func (s *session) deadLettersCmd() *cobra.Command {
	var sub string
	list := &cobra.Command{
		Use:   "list",
		Short: "List parked events, oldest first",
		Long: `List the events subscriptions parked after their handler kept failing,
in the order they were parked. An event parked only to keep its stream in
order behind an earlier failure shows which dead letter blocks it.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: s.run(func(ctx context.Context, _ []string) error {
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			dls, err := store.DeadLetters(ctx, sub)
			if err != nil {
				return err
			}
			if s.json {
				out := []jsonDeadLetter{}
				for _, d := range dls {
					out = append(out, jsonDeadLetter{ID: d.ID, Subscription: d.Subscription, Partition: d.Partition,
						Position: d.Position.String(), EventID: d.EventID.String(), StreamID: d.StreamID, Type: d.Type,
						Error: s.red.text(d.Error), Attempts: d.Attempts, BlockedBy: d.BlockedBy, RetryRequested: d.RetryRequested,
						ParkedAt: d.ParkedAt.UTC()})
				}
				return writeJSON(s.out, out)
			}
			if len(dls) == 0 {
				_, err := fmt.Fprintln(s.out, "No dead letters.")
				return err
			}
			t := newTable(s.out, "ID", "SUBSCRIPTION", "PARTITION", "POSITION", "STREAM", "TYPE", "ATTEMPTS", "PARKED", "RETRY", "ERROR")
			for _, d := range dls {
				why := s.red.text(d.Error)
				if d.BlockedBy != 0 {
					why = fmt.Sprintf("behind dead letter %d", d.BlockedBy)
				}
				retry := "-"
				if d.RetryRequested {
					retry = "pending"
				}
				t.row(fmt.Sprint(d.ID), d.Subscription, fmt.Sprint(d.Partition), d.Position.String(), d.StreamID, d.Type,
					fmt.Sprint(d.Attempts), formatTime(d.ParkedAt), retry, why)
			}
			return t.flush()
		}),
	}
	list.Flags().StringVarP(&sub, "subscription", "s", "", "only this subscription's (default all)")

	var stream string
	retry := &cobra.Command{
		Use:   "retry SUBSCRIPTION",
		Short: "Ask the processes running a subscription to retry its dead letters",
		Long: `Mark a subscription's dead letters (or one stream's, with --stream) for
retry. The processes running the subscription pick them up at their next
batch and run them again, each stream in order: an event that succeeds
leaves the dead letters, one that fails again stays with its attempts
counted. Nothing is retried until a process runs the subscription.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: s.run(func(ctx context.Context, args []string) error {
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			name, err := s.subscriptionName(ctx, args[0])
			if err != nil {
				return err
			}
			n, err := store.RetryDeadLetters(ctx, name, stream)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.out, map[string]any{"subscription": name, "marked": n})
			}
			_, err = fmt.Fprintf(s.out, "%s of %s marked for retry\n", plural(n, "dead letter", "dead letters"), display(name))
			return err
		}),
	}
	retry.Flags().StringVar(&stream, "stream", "", "only this stream's dead letters")
	return group("dead-letters", "List and retry the events subscriptions parked", list, retry)
}

// subscriptionName resolves a name given on the command line to a
// subscription: the name itself, or a projection's "projection:NAME".
func (s *session) subscriptionName(ctx context.Context, name string) (string, error) {
	sts, err := s.store.SubscriptionStatuses(ctx, "")
	if err != nil {
		return "", err
	}
	for _, want := range []string{name, "projection:" + name} {
		for _, st := range sts {
			if st.Name == want {
				return want, nil
			}
		}
	}
	return "", notFound("no subscription named %q", name)
}

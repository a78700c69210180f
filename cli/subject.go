package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// projectionForgetter is the optional part of Projections that forgets a
// subject in the read models: *projection.Runner has it.
type projectionForgetter interface {
	Forget(ctx context.Context, keys projection.KeyForgetter, subject string) error
}

// subjectCmd is `subject forget|forgotten`: crypto-shredding (package
// shred).
func (s *session) subjectCmd() *cobra.Command {
	forget := &cobra.Command{
		Use:   "forget SUBJECT_ID",
		Short: "Forget a data subject: delete its key, so its personal fields read erased",
		Long: `Forget a data subject (a customer, a person): its key is deleted from the
key table, so every personal field sealed under it reads back erased from
then on (the JSON string "` + schema.Erased + `", or null for a
value that was not a string), in every read, subscription, rebuild and
copy; the snapshots of the streams its data was appended to are deleted.
Appends of personal data for the subject are refused afterwards. A
subject never seen is recorded as forgotten. There is no undo.

Read models hold what their projections wrote from plaintext. Embedded in
the application with its *projection.Runner (cli.Config.Projections), the
command runs each projection's Forget in the key's transaction
(projection.Runner.Forget); standalone, or for a projection without one,
read models keep their rows until they are rebuilt. See the README's "Forgetting a data subject" for the
operator's part (VACUUM, backups).`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: s.run(func(ctx context.Context, args []string) error {
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			sh := shred.New(store.Pool(), &shred.Config{Schema: s.schema})
			forget := sh.Forget
			if p, ok := s.cfg.Projections.(projectionForgetter); ok {
				// Embedded with a *projection.Runner: its projections'
				// Forget run in the key's transaction.
				forget = func(ctx context.Context, subject string) error { return p.Forget(ctx, sh, subject) }
			}
			if err := forget(ctx, args[0]); err != nil {
				if errors.Is(err, eventstore.ErrInvalidArgument) {
					return usageErr("%v", err)
				}
				return err
			}
			if s.json {
				return writeJSON(s.out, struct {
					Subject   string `json:"subject"`
					Forgotten bool   `json:"forgotten"`
				}{args[0], true})
			}
			_, err = fmt.Fprintf(s.out, "Subject %s forgotten: its key is deleted; its personal fields read %q from now on.\n", display(args[0]), schema.Erased)
			return err
		}),
	}
	list := &cobra.Command{
		Use:   "forgotten",
		Short: "List the forgotten data subjects",
		Args:  usageArgs(cobra.NoArgs),
		RunE: s.run(func(ctx context.Context, _ []string) error {
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			subjects, err := shred.New(store.Pool(), &shred.Config{Schema: s.schema}).Forgotten(ctx)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.out, struct {
					Forgotten []string `json:"forgotten"`
				}{append([]string{}, subjects...)})
			}
			fmt.Fprintf(s.out, "%s forgotten\n", plural(int64(len(subjects)), "subject", "subjects"))
			for _, sub := range subjects {
				fmt.Fprintf(s.out, "  %s\n", display(sub))
			}
			return nil
		}),
	}
	return group("subject", "Forget data subjects (crypto-shredding)", forget, list)
}

package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtx"
)

// adminTx are the options of the administrative transactions (and
// ReadLast's snapshot) that run no caller code: besides the server process
// of a lost connection being ended, the server ends one whose client went
// silent for 10 s between two statements (it needs microseconds), even if
// this process is gone too.
var adminTx = pgtx.Options{IdleTimeout: 10 * time.Second}

// adminQueries are the statements of the operators' and tools' calls
// (admin.go, head.go, status.go, deadletter_admin.go, readlast.go) with
// their placeholders filled in.
type adminQueries struct {
	head, horizon                          string
	statuses, probe                        string
	lastEntry, reset, dropDeadLettersAfter string
	deleteSubscription                     [3]string
	listDeadLetters, retryDeadLetters      string
	readLast, lastReadable, readCorrelated string
}

func buildAdminQueries(r *strings.Replacer) adminQueries {
	return adminQueries{
		head:                 r.Replace(headSQL),
		horizon:              r.Replace(horizonSQL),
		statuses:             r.Replace(subscriptionStatusesSQL),
		probe:                r.Replace(probeSubscriptionSQL),
		lastEntry:            r.Replace(lastEntrySQL),
		reset:                r.Replace(resetSubscriptionSQL),
		dropDeadLettersAfter: r.Replace(dropDeadLettersAfterSQL),
		deleteSubscription: [3]string{r.Replace(deleteSubscriptionSQL),
			r.Replace(deleteSubscriptionMembersSQL), r.Replace(deleteDeadLettersSQL)},
		listDeadLetters:  r.Replace(listDeadLettersSQL),
		retryDeadLetters: r.Replace(retryDeadLettersSQL),
		readLast:         r.Replace(readLastSQL),
		lastReadable:     r.Replace(lastReadableSQL),
		readCorrelated:   r.Replace(readCorrelatedSQL),
	}
}

// ErrPastHead is matched (errors.Is) by the *PastHeadError of a reset to a
// position past the end of the log.
var ErrPastHead = errors.New("eventstore: position past the head of the log")

// PastHeadError reports a reset to a position after the last committed
// event: the events appended until the log reached it would be skipped
// without a word. Nothing was changed.
type PastHeadError struct {
	// Subscription is the subscription that was to be reset.
	Subscription string
	// Position is the position asked for.
	Position Position
	// Head is the position of the last committed event (zero: the log is
	// empty).
	Head Position
}

func (e *PastHeadError) Error() string {
	return fmt.Sprintf("eventstore: reset subscription %q to %s: past the head of the log (last event at %s)", e.Subscription, e.Position, e.Head)
}

// Is makes errors.Is(err, ErrPastHead) true.
func (e *PastHeadError) Is(target error) bool { return target == ErrPastHead }

// lastEntrySQL reads the position of the last committed event, visible to
// a gap-safe reader or not. Index: events_log_idx, read backwards once.
const lastEntrySQL = `SELECT transaction_id, position FROM {schema}.events
	ORDER BY transaction_id DESC, position DESC LIMIT 1`

// resetSubscriptionSQL moves every partition of subscription $1 to the
// position ($2, $3). Its row locks wait for the partitions' batches in
// flight and fence the later ones. Index: subscriptions_pkey.
const resetSubscriptionSQL = `UPDATE {schema}.subscriptions
	SET position_tx = $2, position_seq = $3, resets = resets + 1, last_error = NULL,
	    state = CASE WHEN owner IS NULL THEN 'idle' ELSE 'running' END, updated_at = now()
	WHERE name = $1`

// dropDeadLettersAfterSQL drops the dead letters of subscription $1 after
// the position ($2, $3). Index: dead_letters_partition_idx (its first
// column).
const dropDeadLettersAfterSQL = `DELETE FROM {schema}.dead_letters
	WHERE subscription = $1 AND (position_tx, position_seq) > ($2, $3)`

// ResetSubscription moves every partition of a subscription back (or
// forward) to position to — the zero Position replays the whole log — and
// drops its dead letters after that position. A position past the last
// committed event is refused with a *PastHeadError (ErrPastHead).
//
// If fn is not nil it runs in the same transaction (to clear a read model,
// say), after the subscription's rows are locked and its checkpoints moved:
// a batch in flight has then either committed before fn runs (fn sees and
// clears its writes, with DELETE as well as with TRUNCATE) or is fenced
// and rolls back. Processes running the subscription notice at their next
// batch and continue from to.
func (s *Store) ResetSubscription(ctx context.Context, name string, to Position, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if err := errors.Join(checkNames("reset subscription", name), checkPosition("reset subscription", to)); err != nil {
		return err
	}
	var past *PastHeadError
	// fn is the caller's code: no idle timeout (see internal/pgtx).
	err := pgtx.Run(ctx, s.pool, pgtx.Options{}, func(tx pgx.Tx) error {
		if !to.IsZero() {
			var head Position
			var htx int64
			err := tx.QueryRow(ctx, s.sql.admin.lastEntry).Scan(&htx, &head.Seq)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			head.TxID = uint64(htx)
			if head.Less(to) {
				past = &PastHeadError{Subscription: name, Position: to, Head: head}
				return past
			}
		}
		// First the rows: this waits for the partitions' batches in flight
		// (each holds its row from its first statement) and fences the
		// later ones, before fn clears anything.
		tag, err := tx.Exec(ctx, s.sql.admin.reset, name, int64(to.TxID), to.Seq)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("no subscription named %q", name)
		}
		if fn != nil {
			if err := fn(ctx, tx); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, s.sql.admin.dropDeadLettersAfter, name, int64(to.TxID), to.Seq); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if past != nil {
		return past
	}
	if err != nil {
		return fmt.Errorf("eventstore: reset subscription %q: %w", name, err)
	}
	return nil
}

// The statements of DeleteSubscription, each on the subscription $1.
// Indexes: subscriptions_pkey, subscription_members_pkey,
// dead_letters_partition_idx (their first column).
const (
	deleteSubscriptionSQL        = `DELETE FROM {schema}.subscriptions WHERE name = $1`
	deleteSubscriptionMembersSQL = `DELETE FROM {schema}.subscription_members WHERE name = $1`
	deleteDeadLettersSQL         = `DELETE FROM {schema}.dead_letters WHERE subscription = $1`
)

// DeleteSubscription removes a subscription's checkpoints, members and dead
// letters. Running processes stop handling it at their next batch.
func (s *Store) DeleteSubscription(ctx context.Context, name string) error {
	if err := checkNames("delete subscription", name); err != nil {
		return err
	}
	err := pgtx.Run(ctx, s.pool, adminTx, func(tx pgx.Tx) error {
		for _, q := range s.sql.admin.deleteSubscription {
			if _, err := tx.Exec(ctx, q, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("eventstore: delete subscription %q: %w", name, err)
	}
	return nil
}

package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-go/strata/telemetry"
)

// ErrTransactionIDsBehind is matched (errors.Is) by every
// *TransactionIDsBehindError: the database assigns transaction IDs below
// those already in the log, as after a logical dump restored into a new
// cluster.
var ErrTransactionIDsBehind = errors.New("eventstore: the database's transaction IDs are behind the log's")

// TransactionIDsBehindError reports that the database's transaction ID
// counter is behind the IDs stored in the log or in a subscription's
// checkpoint. The log is ordered by transaction ID, so an event appended
// now sorts before events already stored and before every checkpoint past
// it: no subscription, projection or relay ever delivers it, and appends
// to streams written before are refused (ErrOutOfOrder). It happens when a
// logical dump (pg_dump, pg_dumpall) is restored into a new cluster, whose
// counter starts low; physical backups and pg_upgrade keep the counter.
//
// The fix: stop the server and raise its transaction ID epoch past the
// stored IDs with pg_resetwal -e Epoch -D <datadir> (see the README on
// backups), before the application appends.
type TransactionIDsBehindError struct {
	// Next is the next transaction ID the database will assign
	// (pg_snapshot_xmax of a current snapshot).
	Next uint64
	// MaxEvent is the highest transaction ID stored with an event (0 for
	// an empty log).
	MaxEvent uint64
	// MaxCheckpoint is the highest transaction ID of a subscription's
	// checkpoint (0 when there is none), and Subscription that
	// subscription's name.
	MaxCheckpoint uint64
	// Subscription is the subscription whose checkpoint is MaxCheckpoint.
	Subscription string
}

// Highest is the highest transaction ID stored: MaxEvent or MaxCheckpoint.
func (e *TransactionIDsBehindError) Highest() uint64 { return max(e.MaxEvent, e.MaxCheckpoint) }

// Epoch is the transaction ID epoch (the high 32 bits of a 64-bit ID) to
// give pg_resetwal -e: one more than the highest stored ID's.
func (e *TransactionIDsBehindError) Epoch() uint64 { return e.Highest()>>32 + 1 }

func (e *TransactionIDsBehindError) Error() string {
	stored := fmt.Sprintf("the log holds transaction ID %d", e.MaxEvent)
	if e.MaxCheckpoint > e.MaxEvent {
		stored = fmt.Sprintf("subscription %q has a checkpoint at transaction ID %d", e.Subscription, e.MaxCheckpoint)
	}
	return fmt.Sprintf("eventstore: the database's transaction IDs went back (a logical dump restored into a new cluster?): "+
		"the next ID is %d but %s, %d ahead; events appended now would sort before existing ones and never be delivered. "+
		"Stop the server and run pg_resetwal -e %d -D <datadir> before appending (see the README on backups)",
		e.Next, stored, e.Highest()-e.Next+1, e.Epoch())
}

// Is makes errors.Is(err, ErrTransactionIDsBehind) true.
func (e *TransactionIDsBehindError) Is(target error) bool { return target == ErrTransactionIDsBehind }

// checkTransactionIDsSQL reads the next transaction ID, the highest one an
// event was written with (events_log_idx read backwards once), and the
// highest checkpoint (subscriptions has a row per partition).
const checkTransactionIDsSQL = `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
		coalesce((SELECT transaction_id FROM {schema}.events ORDER BY transaction_id DESC LIMIT 1), 0),
		coalesce(c.position_tx, 0), coalesce(c.name, '')
	FROM (SELECT 1) one
	LEFT JOIN LATERAL (SELECT name, position_tx FROM {schema}.subscriptions
		ORDER BY position_tx DESC LIMIT 1) c ON true`

// CheckTransactionIDs compares the database's next transaction ID with
// the highest stored in the log and in subscriptions' checkpoints. It
// returns nil when the counter is ahead of them all (always, unless the
// database was restored from a logical dump), a *TransactionIDsBehindError
// when it is not, or the error that kept it from looking. It costs two
// index or small-table lookups, assigns no transaction ID and writes
// nothing: cheap enough for a health probe or start-up.
func (s *Store) CheckTransactionIDs(ctx context.Context) error {
	var e TransactionIDsBehindError
	var next, maxEvent, maxCheckpoint int64
	err := s.pool.QueryRow(ctx, s.sql.expand.Replace(checkTransactionIDsSQL)).Scan(&next, &maxEvent, &maxCheckpoint, &e.Subscription)
	if err != nil {
		return fmt.Errorf("eventstore: check transaction IDs: %w", err)
	}
	e.Next, e.MaxEvent, e.MaxCheckpoint = uint64(next), uint64(maxEvent), uint64(maxCheckpoint)
	// Every ID a visible row was written with, or that a visible
	// checkpoint names, is below the snapshot's xmax on a counter that
	// only grows.
	if e.MaxEvent < e.Next && e.MaxCheckpoint < e.Next {
		return nil
	}
	return &e
}

// TransactionIDsHealth is a telemetry.HealthFunc for the check of
// CheckTransactionIDs: Failing, with the fix in its reason, when the
// database's transaction IDs are behind the log's (or the check cannot
// run), Ready otherwise. Add it to a HealthHandler's checks:
//
//	checks["strata:transaction-ids"] = store.TransactionIDsHealth
func (s *Store) TransactionIDsHealth(ctx context.Context) telemetry.Health {
	if err := s.CheckTransactionIDs(ctx); err != nil {
		return telemetry.Health{State: telemetry.Failing, Reason: err.Error()}
	}
	return telemetry.Health{}
}

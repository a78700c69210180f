package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtx"
)

// DeadLetter is an event a subscription parked.
type DeadLetter struct {
	// ID identifies the dead letter.
	ID int64
	// Subscription and Partition say whose it is.
	Subscription string
	// Partition is the subscription partition it belongs to.
	Partition int
	// Position is the event's log position.
	Position Position
	// EventID, StreamID and Type identify the event.
	EventID uuid.UUID
	// StreamID is the event's stream.
	StreamID string
	// Type is the event's type.
	Type string
	// Error is the handler's last error, or a note that the event is
	// parked behind BlockedBy.
	Error string
	// Attempts is how many times the handler was run on it.
	Attempts int
	// BlockedBy is the ID of the stream's first dead letter when this one
	// was parked only to keep the stream in order (0 otherwise).
	BlockedBy int64
	// RetryRequested says a retry is pending.
	RetryRequested bool
	// ParkedAt is when it was parked.
	ParkedAt time.Time
}

// listDeadLettersSQL lists the dead letters of subscription $1 (NULL:
// every subscription's) in the order they were parked. Index:
// dead_letters_partition_idx or dead_letters_event_key for one
// subscription, dead_letters_pkey for all.
const listDeadLettersSQL = `SELECT id, subscription, partition, position_tx, position_seq, event_id, stream_id,
		event_type, error, attempts, coalesce(blocked_by, 0), retry_requested, parked_at
	FROM {schema}.dead_letters WHERE $1::text IS NULL OR subscription = $1 ORDER BY id`

// DeadLetters lists dead letters in the order they were parked; subscription
// "" lists every subscription's.
func (s *Store) DeadLetters(ctx context.Context, subscription string) ([]DeadLetter, error) {
	if err := checkNames("dead letters", subscription); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, s.sql.admin.listDeadLetters, orNull(subscription))
	if err != nil {
		return nil, fmt.Errorf("eventstore: dead letters: %w", err)
	}
	var out []DeadLetter
	var d DeadLetter
	var tx int64
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Subscription, &d.Partition, &tx, &d.Position.Seq, &d.EventID, &d.StreamID,
		&d.Type, &d.Error, &d.Attempts, &d.BlockedBy, &d.RetryRequested, &d.ParkedAt}, func() error {
		d.Position.TxID = uint64(tx)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: dead letters: %w", err)
	}
	return out, nil
}

// retryDeadLettersSQL marks the dead letters of subscription $1 for a
// retry, those of stream $2 only unless $2 is NULL. Index:
// dead_letters_partition_idx or dead_letters_event_key (their first
// column).
const retryDeadLettersSQL = `UPDATE {schema}.dead_letters SET retry_requested = true
	WHERE subscription = $1 AND ($2::text IS NULL OR stream_id = $2)`

// RetryDeadLetters asks the processes running a subscription to run its
// dead letters again, each stream's in order (streamID "" for all streams).
// It returns how many were marked. A retried event that succeeds leaves
// the dead letters; one that fails again stays, with its attempts counted.
func (s *Store) RetryDeadLetters(ctx context.Context, subscription, streamID string) (int64, error) {
	if err := checkNames("retry dead letters", subscription, streamID); err != nil {
		return 0, err
	}
	var n int64
	err := pgtx.Run(ctx, s.pool, adminTx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.sql.admin.retryDeadLetters, subscription, orNull(streamID))
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return s.notify(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("eventstore: retry dead letters of %q: %w", subscription, err)
	}
	return n, nil
}

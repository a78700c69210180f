package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Retiring streams: operations of the schema's owner (migration 0032 gives
// the application role no privilege on the columns they write, so it can
// neither retire a stream nor bring one back).
//
//   - Tombstone: the stream takes no append ever again. Its events stay.
//   - Archive: the stream's events move to the archived_events table: out
//     of reads of the log, of every subscription, and of the hot events
//     table, so that the log's index and its reads shrink with them. No
//     append meanwhile. Restore brings them back, at their positions.
//   - TruncateStream: the stream's events before a version are deleted,
//     after a snapshot that covers them.
//
// Each runs in one transaction that first locks the stream's row, so that
// an append waiting for it sees the stream retired (a *RetiredError) and
// none slips in between. For readers of the log, the retired events are
// gone from that commit on: a reader behind them passes over them, and
// every other event is read exactly as before (deleting rows moves no
// other row, and nothing is inserted below the readers' horizon, except by
// Restore, below).

// ErrRetired is matched (errors.Is) by *RetiredError: an append to a
// tombstoned or archived stream.
var ErrRetired = errors.New("eventstore: stream is retired")

// RetiredError reports an append refused because the stream is tombstoned
// (for ever) or archived (until Restore). Nothing was written.
type RetiredError struct {
	// StreamID is the stream appended to.
	StreamID string
	// State is "tombstoned" or "archived".
	State string
}

func (e *RetiredError) Error() string {
	return fmt.Sprintf("eventstore: append to %q refused: the stream is %s", e.StreamID, e.State)
}

// Is makes errors.Is(err, ErrRetired) true.
func (e *RetiredError) Is(target error) bool { return target == ErrRetired }

// retiredError translates the refusal of migration 0032's trigger (nil for
// any other error).
func retiredError(streamID string, pgErr *pgconn.PgError) error {
	if pgErr.Code != "SR001" {
		return nil
	}
	state := "tombstoned"
	if len(pgErr.Message) >= len("archived") && pgErr.Message[len(pgErr.Message)-len("archived"):] == "archived" {
		state = "archived"
	}
	return &RetiredError{StreamID: streamID, State: state}
}

// lockStreamSQL locks a stream's row for a retiring operation and reads
// its state. Index: streams_pkey.
const lockStreamSQL = `SELECT version, tombstoned_at IS NOT NULL, archived_at IS NOT NULL, truncated_before
	FROM {schema}.streams WHERE stream_id = $1 FOR UPDATE`

const tombstoneSQL = `UPDATE {schema}.streams SET tombstoned_at = now() WHERE stream_id = $1 AND tombstoned_at IS NULL`

// archiveSQL moves a stream's events from the log to archived_events
// (events_stream_version_key finds them), each whole row as one value of
// the events table's row type, after archived_at is set (which lifts the
// foreign key from the stream's row to its last event).
const archiveSQL = `WITH moved AS (DELETE FROM {schema}.events WHERE stream_id = $1 RETURNING events)
	INSERT INTO {schema}.archived_events (position, stream_id, version, event)
	SELECT (m.events).position, (m.events).stream_id, (m.events).version, m.events FROM moved m`

const markArchivedSQL = `UPDATE {schema}.streams SET archived_at = now() WHERE stream_id = $1`

// restoreSQL moves the events back, every stored column as it was:
// positions, transaction IDs and times included (OVERRIDING SYSTEM VALUE:
// the owner's privilege). Columns Postgres computes (partition_key,
// GENERATED ... STORED) are computed again, and may not be written: the
// list names every other column of the events table. A column added to
// events must be added here.
const restoreSQL = `WITH moved AS (DELETE FROM {schema}.archived_events WHERE stream_id = $1 RETURNING event)
	INSERT INTO {schema}.events (position, transaction_id, event_id, stream_id, version, category, event_type,
		schema_version, data, metadata, correlation_id, causation_id, recorded_at, principal, db_role)
	OVERRIDING SYSTEM VALUE
	SELECT (m.event).position, (m.event).transaction_id, (m.event).event_id, (m.event).stream_id, (m.event).version,
		(m.event).category, (m.event).event_type, (m.event).schema_version, (m.event).data, (m.event).metadata,
		(m.event).correlation_id, (m.event).causation_id, (m.event).recorded_at, (m.event).principal, (m.event).db_role
	FROM moved m`

const markRestoredSQL = `UPDATE {schema}.streams SET archived_at = NULL WHERE stream_id = $1`

// truncateSQL deletes a stream's events before version $2.
// Index: events_stream_version_key.
const truncateSQL = `DELETE FROM {schema}.events WHERE stream_id = $1 AND version < $2`

const markTruncatedSQL = `UPDATE {schema}.streams SET truncated_before = $2 WHERE stream_id = $1`

// Tombstone makes streamID take no append ever again: every later append
// returns a *RetiredError (errors.Is(err, ErrRetired)), except that one
// expecting NoStream gets a *ConflictError, as for any existing stream. Its
// events stay readable. Tombstoning a tombstoned stream does nothing; a
// stream that does not exist returns ErrStreamNotFound. It needs the
// privileges of the schema's owner.
func (s *Store) Tombstone(ctx context.Context, streamID string) error {
	return s.retire(ctx, "tombstone", streamID, func(ctx context.Context, tx pgx.Tx, st streamState) error {
		_, err := tx.Exec(ctx, s.sql.expand.Replace(tombstoneSQL), streamID)
		return err
	})
}

// Archive moves streamID's events out of the log into the archived_events
// table: they leave ReadStream, ReadAll and every subscription (a
// subscription behind them passes over them), and the events table and
// its indexes no longer hold them. Appends are refused with a
// *RetiredError until Restore. Archiving an archived stream does
// nothing. It needs the privileges of the schema's owner.
func (s *Store) Archive(ctx context.Context, streamID string) error {
	return s.retire(ctx, "archive", streamID, func(ctx context.Context, tx pgx.Tx, st streamState) error {
		if st.archived {
			return nil
		}
		if _, err := tx.Exec(ctx, s.sql.expand.Replace(markArchivedSQL), streamID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.sql.expand.Replace(archiveSQL), streamID)
		return err
	})
}

// Restore brings an archived stream's events back into the log, at their
// old positions, and lets the stream take appends again (unless it is
// tombstoned). ReadStream and ReadAll see them again. A subscription that
// passed their positions while they were archived does not handle them
// (its checkpoint is past them; reset it to replay them); one behind them
// handles them in order. Restoring a stream that is not archived does
// nothing. It needs the privileges of the schema's owner.
func (s *Store) Restore(ctx context.Context, streamID string) error {
	return s.retire(ctx, "restore", streamID, func(ctx context.Context, tx pgx.Tx, st streamState) error {
		if !st.archived {
			return nil
		}
		if _, err := tx.Exec(ctx, s.sql.expand.Replace(restoreSQL), streamID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.sql.expand.Replace(markRestoredSQL), streamID)
		return err
	})
}

// ErrNoSnapshot is matched by the error of TruncateStream when no snapshot
// covers the events it would delete.
var ErrNoSnapshot = errors.New("eventstore: no snapshot covers the truncated events")

// TruncateStream deletes streamID's events before version before, for
// good: a stream that is loaded from a snapshot needs only the events
// after it. The stream's snapshot must be at version before-1 or later
// (else ErrNoSnapshot, nothing deleted), and before must be at most the
// stream's version (its last event stays: the next append continues from
// it). ReadStream then starts at version before. Readers of the log behind
// the deleted events pass over them. It needs the privileges of the
// schema's owner.
func (s *Store) TruncateStream(ctx context.Context, streamID string, before int64) error {
	return s.retire(ctx, "truncate", streamID, func(ctx context.Context, tx pgx.Tx, st streamState) error {
		switch {
		case before < 1 || before > st.version:
			return fmt.Errorf("%w: truncate %q before version %d: not in [1, %d] (the last event stays)", ErrInvalidArgument, streamID, before, st.version)
		case st.archived:
			return &RetiredError{StreamID: streamID, State: "archived"}
		case before <= st.truncatedBefore:
			return nil
		}
		var snap int64
		err := tx.QueryRow(ctx, s.sql.expand.Replace(`SELECT version FROM {schema}.snapshots WHERE stream_id = $1`), streamID).Scan(&snap)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && snap < before-1 {
			return fmt.Errorf("eventstore: truncate %q before version %d: %w (latest snapshot: version %d)", streamID, before, ErrNoSnapshot, snap)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.sql.expand.Replace(truncateSQL), streamID, before); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.sql.expand.Replace(markTruncatedSQL), streamID, before)
		return err
	})
}

// streamState is a stream's row as a retiring operation locked it.
type streamState struct {
	version, truncatedBefore int64
	tombstoned, archived     bool
}

// retire runs op in a transaction holding the stream's row lock.
func (s *Store) retire(ctx context.Context, what, streamID string, op func(context.Context, pgx.Tx, streamState) error) error {
	if err := checkStreamArg(what, streamID); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var st streamState
		err := tx.QueryRow(ctx, s.sql.expand.Replace(lockStreamSQL), streamID).Scan(&st.version, &st.tombstoned, &st.archived, &st.truncatedBefore)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrStreamNotFound
		}
		if err != nil {
			return err
		}
		return op(ctx, tx, st)
	})
	if err != nil {
		return fmt.Errorf("eventstore: %s %q: %w", what, streamID, err)
	}
	return nil
}

// Retirement counts the retired streams, for status.
type Retirement struct {
	// Tombstoned is the number of tombstoned streams.
	Tombstoned int64
	// Archived is the number of archived streams.
	Archived int64
	// ArchivedEvents is the number of events in archived_events.
	ArchivedEvents int64
	// Truncated is the number of streams truncated before some version.
	Truncated int64
}

// retirementSQL counts retired streams. It scans the streams table (no
// index on the retirement columns: they are written rarely and read by
// status only) and counts archived_events.
const retirementSQL = `SELECT count(*) FILTER (WHERE tombstoned_at IS NOT NULL), count(*) FILTER (WHERE archived_at IS NOT NULL),
		(SELECT count(*) FROM {schema}.archived_events), count(*) FILTER (WHERE truncated_before > 0)
	FROM {schema}.streams`

// Retirement returns how many streams are tombstoned, archived and
// truncated, and how many events are archived.
func (s *Store) Retirement(ctx context.Context) (Retirement, error) {
	var r Retirement
	err := s.pool.QueryRow(ctx, s.sql.expand.Replace(retirementSQL)).Scan(&r.Tombstoned, &r.Archived, &r.ArchivedEvents, &r.Truncated)
	if err != nil {
		return Retirement{}, fmt.Errorf("eventstore: retirement: %w", err)
	}
	return r, nil
}

// RetiredStream is one stream's retirement, as StreamRetirement reports it.
type RetiredStream struct {
	// StreamID is the stream.
	StreamID string
	// Version is the stream's version.
	Version int64
	// TombstonedAt is when it was tombstoned (zero: it is not).
	TombstonedAt time.Time
	// ArchivedAt is when it was archived (zero: it is not).
	ArchivedAt time.Time
	// TruncatedBefore is the version before which its events were deleted
	// (0: none).
	TruncatedBefore int64
}

// StreamRetirement returns a stream's retirement state, or
// ErrStreamNotFound.
func (s *Store) StreamRetirement(ctx context.Context, streamID string) (RetiredStream, error) {
	if err := checkStreamArg("retirement of", streamID); err != nil {
		return RetiredStream{}, err
	}
	r := RetiredStream{StreamID: streamID}
	var tomb, arch *time.Time
	err := s.pool.QueryRow(ctx, s.sql.expand.Replace(`SELECT version, tombstoned_at, archived_at, truncated_before
		FROM {schema}.streams WHERE stream_id = $1`), streamID).Scan(&r.Version, &tomb, &arch, &r.TruncatedBefore)
	if errors.Is(err, pgx.ErrNoRows) {
		return RetiredStream{}, fmt.Errorf("eventstore: retirement of %q: %w", streamID, ErrStreamNotFound)
	}
	if err != nil {
		return RetiredStream{}, fmt.Errorf("eventstore: retirement of %q: %w", streamID, err)
	}
	if tomb != nil {
		r.TombstonedAt = *tomb
	}
	if arch != nil {
		r.ArchivedAt = *arch
	}
	return r, nil
}

package eventstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtx"
)

// readLastSQL is the gap-safe read of the log (readLogSQL) walked
// backwards: the same horizon (below the snapshot's xmin), the last $1
// events, newest first, that the filter selects ($2 categories, $3 types:
// NULL keeps all; $5 the partition kept when there are $4 > 1, and $4 is
// at least 1, as in readLogFilteredSQL). Index: events_log_idx read from
// its end; the filter applies to the rows the backward scan meets, and a
// NULL condition is true for every row without reading it.
const readLastSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	  AND ($2::text[] IS NULL OR category = ANY($2::text[]))
	  AND ($3::text[] IS NULL OR event_type = ANY($3::text[]))
	  AND ($4::bigint <= 1 OR ((hashtext(stream_id)::bigint & 2147483647) % $4::bigint) = $5::bigint)
	ORDER BY transaction_id DESC, position DESC LIMIT $1`

// lastReadableSQL reads the position of the last event a gap-safe reader
// can see. Index: events_log_idx, read backwards once.
const lastReadableSQL = `SELECT transaction_id, position FROM {schema}.events
	WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	ORDER BY transaction_id DESC, position DESC LIMIT 1`

// ReadLast returns the last limit events of the log that f selects and a
// gap-safe reader can see, in log order. Page.Next is the position of the
// last event such a reader can see, whether f selects it or not: reading
// on from it with ReadAll or ReadAllFiltered continues exactly after the
// events returned, skipping nothing. This is how a tail that follows the
// log starts.
func (s *Store) ReadLast(ctx context.Context, limit int, f Filter) (Page, error) {
	if err := checkLimit("read last", limit); err != nil {
		return Page{}, err
	}
	if err := f.check(); err != nil {
		return Page{}, err
	}
	// Both statements run in one repeatable-read snapshot, so they share
	// the horizon and Next cannot pass an event the first missed.
	var page Page
	snapshot := adminTx
	snapshot.IsoLevel, snapshot.AccessMode = pgx.RepeatableRead, pgx.ReadOnly
	err := pgtx.Run(ctx, s.pool, snapshot, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, s.sql.admin.readLast, limit,
			nilIfEmpty(f.Categories), nilIfEmpty(f.Types), max(f.Partitions, 1), f.Partition)
		if err != nil {
			return err
		}
		if err := scanEvents(rows, func(e Event) bool { page.Events = append(page.Events, e); return true }); err != nil {
			return err
		}
		var txID, pos int64
		err = tx.QueryRow(ctx, s.sql.admin.lastReadable).Scan(&txID, &pos)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		page.Next = Position{TxID: uint64(txID), Seq: pos}
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("eventstore: read last %d: %w", limit, err)
	}
	slices.Reverse(page.Events)
	return s.openPage(ctx)(page, nil)
}

// readCorrelatedSQL reads the first $2 events, in log order, of the
// correlation $1. Index: events_correlation_idx (partial, on
// correlation_id).
const readCorrelatedSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE correlation_id = $1 ORDER BY transaction_id, position LIMIT $2`

// ReadCorrelated returns up to limit events whose Metadata.CorrelationID
// is correlationID — everything one request caused — in log order. It
// reads every committed event (no gap-safe horizon: this is for looking,
// not for following the log).
func (s *Store) ReadCorrelated(ctx context.Context, correlationID string, limit int) ([]Event, error) {
	if err := checkLimit(fmt.Sprintf("read correlation %q", correlationID), limit); err != nil {
		return nil, err
	}
	if !validText(correlationID) {
		return nil, fmt.Errorf("%w: read correlation %q: not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, correlationID)
	}
	var events []Event
	rows, err := s.pool.Query(ctx, s.sql.admin.readCorrelated, correlationID, limit)
	if err == nil {
		err = scanEvents(rows, func(e Event) bool { events = append(events, e); return true })
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: read correlation %q: %w", correlationID, err)
	}
	return s.open(ctx, events)
}

package eventstore

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Audit is who appended an event (migration 0040).
type Audit struct {
	// Principal is the application's principal (WithPrincipal) of the
	// append, "" when none was given.
	Principal string
	// Role is the database login role that appended it (session_user),
	// which the database itself records: no application role can set or
	// change it. "" for events appended before migration 0040.
	Role string
}

// auditSQL looks events up by ID (the primary key's index).
const auditSQL = `SELECT event_id, coalesce(principal, ''), coalesce(db_role, '') FROM {schema}.events WHERE event_id = ANY($1)`

// readByPrincipalSQL reads a principal's events after a position, in log
// order, on events_principal_idx (principal, transaction_id, position).
const readByPrincipalSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE principal = $1 AND (transaction_id, position) > ($2, $3)
	ORDER BY transaction_id, position LIMIT $4`

// Audits returns who appended each of the events ids names that exists.
func (s *Store) Audits(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]Audit, error) {
	out := make(map[uuid.UUID]Audit, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, s.sql.expand.Replace(auditSQL), ids)
	if err != nil {
		return nil, fmt.Errorf("eventstore: audit: %w", err)
	}
	var (
		id uuid.UUID
		a  Audit
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &a.Principal, &a.Role}, func() error {
		out[id] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: audit: %w", err)
	}
	return out, nil
}

// ReadByPrincipal returns up to limit events appended under principal
// (WithPrincipal) after position after, in log order: "who wrote this".
// Like ReadCorrelated it reads every committed event (no gap-safe
// horizon: this is for looking, not for following the log); page on with
// the last event's Position.
func (s *Store) ReadByPrincipal(ctx context.Context, principal string, after Position, limit int) ([]Event, error) {
	what := fmt.Sprintf("read principal %q", principal)
	if err := checkLimit(what, limit); err != nil {
		return nil, err
	}
	if principal == "" || !validText(principal) || len(principal) > MaxPrincipalLength {
		return nil, fmt.Errorf("%w: %s: not a principal (empty, longer than %d bytes, not valid UTF-8 or holding a NUL byte)", ErrInvalidArgument, what, MaxPrincipalLength)
	}
	if after.TxID > 1<<63-1 || after.Seq < 0 {
		return nil, fmt.Errorf("%w: %s: position %v is outside the log's range", ErrInvalidArgument, what, after)
	}
	var events []Event
	rows, err := s.pool.Query(ctx, s.sql.expand.Replace(readByPrincipalSQL), principal, int64(after.TxID), after.Seq, limit)
	if err == nil {
		err = scanEvents(rows, func(e Event) bool { events = append(events, e); return true })
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: %s: %w", what, err)
	}
	return s.open(ctx, events)
}

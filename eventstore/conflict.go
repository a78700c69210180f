package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// conflict explains an append the statement refused, reading the
// stream's version: a *ConflictError when the expected version does not
// hold, an *OutOfOrderError when it does (the refusal was for the log's
// order: a transaction with a later ID appended to the stream).
func (s *Store) conflict(ctx context.Context, q querier, streamID string, expected ExpectedVersion) error {
	actual, err := s.streamVersion(ctx, q, streamID)
	if err != nil && !errors.Is(err, ErrStreamNotFound) {
		return fmt.Errorf("eventstore: append to %q: read version after conflict: %w", streamID, err)
	}
	holds := false
	switch {
	case expected == Any:
		holds = true
	case expected == StreamExists:
		holds = actual > 0
	case expected >= 0:
		holds = actual == int64(expected)
	}
	if holds {
		return &OutOfOrderError{StreamID: streamID}
	}
	return &ConflictError{StreamID: streamID, Expected: expected, Actual: actual}
}

// appendError translates the database's errors for an append, in one place.
func (s *Store) appendError(ctx context.Context, q querier, streamID string, expected ExpectedVersion, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if rerr := retiredError(streamID, pgErr); rerr != nil {
			return rerr // retire.go: a tombstoned or archived stream
		}
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == "events_event_id_key":
			// Detail reads: Key (event_id)=(0190…) already exists.
			var id uuid.UUID
			if _, v, ok := strings.Cut(pgErr.Detail, ")=("); ok {
				id, _ = uuid.Parse(strings.TrimSuffix(v, ") already exists."))
			}
			return &DuplicateEventError{StreamID: streamID, ID: id}
		case pgErr.Code == "23505" && pgErr.ConstraintName == "events_stream_version_key":
			// Only possible when events were written around the streams table.
			if _, isTx := q.(pgx.Tx); isTx {
				return &ConflictError{StreamID: streamID, Expected: expected, Actual: -1}
			}
			return s.conflict(ctx, q, streamID, expected)
		case strings.HasPrefix(pgErr.Code, "22"), pgErr.Code == "54000":
			// Data exceptions (bad encoding, invalid JSON) and program
			// limits (an index row too large).
			return &InvalidEventError{StreamID: streamID, Index: -1, Field: "events", Reason: pgErr.Message}
		}
	}
	return fmt.Errorf("eventstore: append to %q: %w", streamID, err)
}

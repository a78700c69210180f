package eventstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// saveSnapshotSQL stores a snapshot unless a later one is stored.
const saveSnapshotSQL = `INSERT INTO {schema}.snapshots AS s (stream_id, version, schema_version, data)
	VALUES ($1, $2, $3, $4)
	ON CONFLICT (stream_id) DO UPDATE
	SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
	    data = EXCLUDED.data, created_at = now()
	WHERE s.version <= EXCLUDED.version`

// saveSnapshotPIISQL is saveSnapshotSQL for a store with an Opener, whose
// snapshots are folded from opened personal fields: nothing is stored when
// a data subject whose data went to the stream is forgotten (package
// shred's tables, migration 0050). The subjects' key rows are
// share-locked until the save's transaction ends, so a forget waits for
// it and then deletes the snapshot, and a save waiting for a forget reads
// the key row as the forget left it (a locking read sees the latest
// version). Index: subject_streams_stream_idx (migration 0055),
// subject_keys_pkey.
const saveSnapshotPIISQL = `WITH keys AS (SELECT k.wrapped_key IS NULL AS forgotten
		FROM {schema}.subject_streams ss JOIN {schema}.subject_keys k ON k.subject = ss.subject
		WHERE ss.stream_id = $1 FOR SHARE OF k)
	INSERT INTO {schema}.snapshots AS s (stream_id, version, schema_version, data)
	SELECT $1::text, $2::bigint, $3::integer, $4::bytea WHERE NOT EXISTS (SELECT FROM keys WHERE forgotten)
	ON CONFLICT (stream_id) DO UPDATE
	SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
	    data = EXCLUDED.data, created_at = now()
	WHERE s.version <= EXCLUDED.version`

// loadSnapshotSQL reads a stream's snapshot. Index: snapshots_pkey.
const loadSnapshotSQL = `SELECT version, schema_version, data, created_at FROM {schema}.snapshots WHERE stream_id = $1`

// SaveSnapshot stores snap as the stream's latest snapshot, unless a
// snapshot of a later version is already stored. With an Opener (see
// Config.Opener), nothing is stored, without error, for a stream holding
// personal data of a forgotten data subject: a snapshot is folded from
// plaintext, and one loaded before the forget must not outlive it.
func (s *Store) SaveSnapshot(ctx context.Context, snap Snapshot) error {
	return s.saveSnapshot(ctx, s.pool, snap)
}

// SaveSnapshotTx is SaveSnapshot inside the caller's transaction.
func (s *Store) SaveSnapshotTx(ctx context.Context, tx pgx.Tx, snap Snapshot) error {
	return s.saveSnapshot(ctx, tx, snap)
}

func (s *Store) saveSnapshot(ctx context.Context, q querier, snap Snapshot) error {
	bad := func(reason string) error {
		return &InvalidEventError{StreamID: snap.StreamID, Index: -1, Field: "snapshot", Reason: reason}
	}
	switch {
	case snap.StreamID == "" || snap.Version <= 0 || snap.Data == nil:
		return bad("want a stream ID, a positive version and data")
	case len(snap.StreamID) > MaxStreamIDLength || !validText(snap.StreamID):
		return bad(fmt.Sprintf("stream ID is longer than %d bytes, not valid UTF-8 or contains a NUL byte", MaxStreamIDLength))
	case snap.SchemaVersion < 0 || snap.SchemaVersion > math.MaxInt32:
		return bad(fmt.Sprintf("schema version %d is not in [0, %d]", snap.SchemaVersion, math.MaxInt32))
	}
	sql := s.sql.saveSnapshot
	if s.cfg.Opener != nil {
		sql = s.sql.saveSnapshotPII
	}
	if _, err := q.Exec(ctx, sql, snap.StreamID, snap.Version, snap.SchemaVersion, snap.Data); err != nil {
		// Migration 0009's check: a snapshot is of a version the stream has.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23514" && strings.HasPrefix(pgErr.Message, "strata: snapshot") {
			return bad(fmt.Sprintf("version %d: the stream has no such version", snap.Version))
		}
		return fmt.Errorf("eventstore: save snapshot of %q: %w", snap.StreamID, err)
	}
	return nil
}

// LoadSnapshot returns the stream's latest snapshot, or ErrSnapshotNotFound.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string) (Snapshot, error) {
	return s.loadSnapshot(ctx, s.pool, streamID)
}

// LoadSnapshotTx is LoadSnapshot inside the caller's transaction.
func (s *Store) LoadSnapshotTx(ctx context.Context, tx pgx.Tx, streamID string) (Snapshot, error) {
	return s.loadSnapshot(ctx, tx, streamID)
}

func (s *Store) loadSnapshot(ctx context.Context, q querier, streamID string) (Snapshot, error) {
	if err := checkStreamArg("load snapshot of", streamID); err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{StreamID: streamID}
	var sv int32
	err := q.QueryRow(ctx, s.sql.loadSnapshot, streamID).Scan(&snap.Version, &sv, &snap.Data, &snap.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Snapshot{}, ErrSnapshotNotFound
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("eventstore: load snapshot of %q: %w", streamID, err)
	}
	snap.SchemaVersion = int(sv)
	return snap, nil
}

package shred

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// Wrapper protects data keys at rest: Wrap is applied to a new subject's
// key before it is stored in the key table, Unwrap to the stored bytes
// before use. Plug a KMS in here (envelope encryption: the KMS's master
// key encrypts each data key). The key table stays in Postgres either way,
// so that a forget is one row update that readers' locks order.
type Wrapper interface {
	Wrap(ctx context.Context, subject string, key []byte) ([]byte, error)
	Unwrap(ctx context.Context, subject string, wrapped []byte) ([]byte, error)
}

// plain stores keys as they are: the default Wrapper.
type plain struct{}

func (plain) Wrap(_ context.Context, _ string, key []byte) ([]byte, error)       { return key, nil }
func (plain) Unwrap(_ context.Context, _ string, wrapped []byte) ([]byte, error) { return wrapped, nil }

// SQL of the key table (migration 0050).
const (
	// recordSQL looks the subjects' keys up and records the stream their
	// data goes to, in one round trip. Index: subject_keys_pkey,
	// subject_streams_pkey.
	recordSQL = `WITH rec AS (INSERT INTO {schema}.subject_streams (subject, stream_id)
		SELECT s, $2 FROM unnest($1::text[]) s ON CONFLICT DO NOTHING)
	SELECT subject, key_version, wrapped_key FROM {schema}.subject_keys WHERE subject = ANY($1)`
	// createSQL gives a subject its first key; a concurrent creation wins
	// and is read back by the caller's next lookup.
	createSQL = `INSERT INTO {schema}.subject_keys (subject, wrapped_key) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING`
	// keysSQL reads keys for opening. Index: subject_keys_pkey.
	keysSQL = `SELECT subject, key_version, wrapped_key FROM {schema}.subject_keys WHERE subject = ANY($1)`
	// lockedKeysSQL is keysSQL for a subscription's batch: the rows stay
	// share-locked until its transaction ends, so a forget (forgetSQL's
	// update) waits for the batch's writes and the next batch sees it.
	lockedKeysSQL = `SELECT subject, key_version, wrapped_key FROM {schema}.subject_keys WHERE subject = ANY($1) FOR SHARE`
	// forgetSQL deletes a subject's key, keeping the row as forgotten (a
	// subject never seen before is recorded as forgotten, so that no
	// later append gives it a key).
	forgetSQL = `INSERT INTO {schema}.subject_keys AS k (subject, wrapped_key, forgotten_at) VALUES ($1, NULL, now())
		ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, forgotten_at = coalesce(k.forgotten_at, now())`
	// forgetSnapshotsSQL deletes the snapshots of the streams the subject's
	// data went to: a snapshot is state folded from plaintext.
	forgetSnapshotsSQL = `DELETE FROM {schema}.snapshots WHERE stream_id IN
		(SELECT stream_id FROM {schema}.subject_streams WHERE subject = $1)`
	// forgetDeadLettersSQL replaces the error text of the dead letters of
	// the subject's streams: a handler's error may quote what it was
	// handed. Index: dead_letters_partition_idx is not on stream_id; dead
	// letters are few.
	forgetDeadLettersSQL = `UPDATE {schema}.dead_letters SET error = $2 WHERE stream_id IN
		(SELECT stream_id FROM {schema}.subject_streams WHERE subject = $1)`
	// forgottenSQL lists forgotten subjects. Index: subject_keys_pkey.
	forgottenSQL = `SELECT subject FROM {schema}.subject_keys WHERE forgotten_at IS NOT NULL ORDER BY subject`
)

// keyRow is a subject's row: wrapped is nil once forgotten.
type keyRow struct {
	version int32
	wrapped []byte
}

// readKeys runs a key query over subjects.
func readKeys(ctx context.Context, q eventstore.Querier, sql string, subjects []string, args ...any) (map[string]keyRow, error) {
	rows, err := q.Query(ctx, sql, append([]any{subjects}, args...)...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]keyRow, len(subjects))
	var (
		subject string
		r       keyRow
	)
	_, err = pgx.ForEachRow(rows, []any{&subject, &r.version, &r.wrapped}, func() error {
		out[subject] = keyRow{version: r.version, wrapped: r.wrapped}
		return nil
	})
	return out, err
}

// sealKeys returns the current key of each subject, creating keys for new
// subjects, and records streamID as holding their data, on q (the
// append's transaction or pool).
func (s *Shredder) sealKeys(ctx context.Context, q eventstore.Querier, streamID string, subjects []string) (map[string]sealKey, error) {
	out := make(map[string]sealKey, len(subjects))
	for attempt := 0; attempt < 3; attempt++ {
		rows, err := readKeys(ctx, q, s.sql.record, subjects, streamID)
		if err != nil {
			return nil, fmt.Errorf("shred: keys: %w", err)
		}
		created := false
		for _, sub := range subjects {
			r, ok := rows[sub]
			switch {
			case ok && r.wrapped == nil:
				return nil, invalid{fmt.Errorf("%w: %q", ErrForgotten, sub)}
			case ok:
				key, err := s.wrapper.Unwrap(ctx, sub, r.wrapped)
				if err != nil {
					return nil, fmt.Errorf("shred: unwrap key of %q: %w", sub, err)
				}
				aead, err := newAEAD(key)
				if err != nil {
					return nil, fmt.Errorf("shred: key of %q: %w", sub, err)
				}
				out[sub] = sealKey{version: uint32(r.version), aead: aead}
			default:
				key := make([]byte, keySize)
				if _, err := rand.Read(key); err != nil {
					return nil, err
				}
				wrapped, err := s.wrapper.Wrap(ctx, sub, key)
				if err != nil {
					return nil, fmt.Errorf("shred: wrap key of %q: %w", sub, err)
				}
				if err := exec(ctx, q, s.sql.create, sub, wrapped); err != nil {
					return nil, fmt.Errorf("shred: create key of %q: %w", sub, err)
				}
				created = true
			}
		}
		if !created {
			return out, nil
		}
	}
	return nil, errors.New("shred: keys: a subject's key could not be read back after creating it")
}

// exec runs a statement that returns no rows through a Querier.
func exec(ctx context.Context, q eventstore.Querier, sql string, args ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

type sealKey struct {
	version uint32
	aead    cipher.AEAD
}

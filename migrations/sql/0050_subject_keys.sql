-- Crypto-shredding: one data key per data subject (package shred).
--
-- A personal field of an event is stored encrypted (AES-256-GCM) under
-- its subject's data key. wrapped_key is that key as the configured
-- shred.Wrapper left it: the key itself by default, or the key encrypted
-- by a KMS's master key. Forgetting the subject sets wrapped_key to NULL
-- and forgotten_at: the row stays, so that a forgotten subject is never
-- given a new key by a late append (it is refused with
-- shred.ErrForgotten), and so that readers lock one row per subject
-- (FOR SHARE) while they turn ciphertext into plaintext inside their own
-- transaction: a forget waits for them, and they see it once it commits.
--
-- The old row version keeps the key bytes on disk until VACUUM removes it
-- (and in the WAL until it is recycled): see the README's "Forgetting a
-- data subject" for the operator's part.
CREATE TABLE IF NOT EXISTS subject_keys (
    subject      text        PRIMARY KEY,
    key_version  integer     NOT NULL DEFAULT 1,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz,
    CONSTRAINT subject_keys_subject_check CHECK (subject <> '' AND octet_length(subject) <= 256),
    CONSTRAINT subject_keys_forgotten_check CHECK ((wrapped_key IS NULL) = (forgotten_at IS NOT NULL))
);

-- The streams a subject's personal fields were appended to, recorded with
-- its key: forgetting the subject deletes their snapshots (a snapshot is
-- state folded from plaintext).
CREATE TABLE IF NOT EXISTS subject_streams (
    subject   text NOT NULL,
    stream_id text NOT NULL,
    PRIMARY KEY (subject, stream_id)
);

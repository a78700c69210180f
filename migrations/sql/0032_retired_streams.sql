-- Retiring streams (eventstore.Store.Tombstone, Archive, Restore,
-- TruncateStream): operations of the schema's owner. The application
-- role has no privilege on the columns added here, so it can neither
-- retire a stream nor bring one back.
--
--   tombstoned_at    the stream takes no append ever again
--   archived_at      its events moved to archived_events: out of the log's
--                    reads, the subscriptions and the hot table, until
--                    restored; no append meanwhile
--   truncated_before its events before this version were deleted (after a
--                    snapshot)
ALTER TABLE streams ADD COLUMN tombstoned_at timestamptz;
ALTER TABLE streams ADD COLUMN archived_at timestamptz;
ALTER TABLE streams ADD COLUMN truncated_before bigint NOT NULL DEFAULT 0;

-- A stream's row points at its last event in the log (0009), except while
-- the stream is archived: then its events are in archived_events, and
-- live_version is NULL, which a foreign key does not check.
ALTER TABLE streams ADD COLUMN live_version bigint
    GENERATED ALWAYS AS (CASE WHEN archived_at IS NULL THEN version END) STORED;
ALTER TABLE streams DROP CONSTRAINT streams_last_event_fkey;
ALTER TABLE streams ADD CONSTRAINT streams_last_event_fkey
    FOREIGN KEY (stream_id, live_version) REFERENCES events (stream_id, version) NOT VALID;

-- The append's guard of 0009, unchanged for appends; an update that
-- retires or restores a stream changes only the columns above (and moves
-- nothing else of the row).
DROP TRIGGER strata_guard_streams_update ON streams;
CREATE TRIGGER strata_guard_streams_update BEFORE UPDATE ON streams FOR EACH ROW
    WHEN ((NEW.tombstoned_at IS NOT DISTINCT FROM OLD.tombstoned_at AND NEW.archived_at IS NOT DISTINCT FROM OLD.archived_at
           AND NEW.truncated_before = OLD.truncated_before
           AND (NEW.last_tx <> pg_current_xact_id()::text::bigint OR OLD.last_tx > NEW.last_tx
                OR NEW.version <= OLD.version OR NEW.stream_id <> OLD.stream_id OR NEW.category <> OLD.category
                OR NEW.created_at <> OLD.created_at OR NEW.updated_at <> now()))
       OR ((NEW.tombstoned_at IS DISTINCT FROM OLD.tombstoned_at OR NEW.archived_at IS DISTINCT FROM OLD.archived_at
            OR NEW.truncated_before <> OLD.truncated_before)
           AND (NEW.version <> OLD.version OR NEW.last_tx <> OLD.last_tx OR NEW.stream_id <> OLD.stream_id
                OR NEW.category <> OLD.category OR NEW.created_at <> OLD.created_at)))
    EXECUTE FUNCTION strata_refuse_stream();

-- No append to a tombstoned or archived stream: every append moves the
-- stream's version in the same statement that inserts its events, so this
-- refuses the whole statement (SQLSTATE SR001, which the store reports as
-- *RetiredError). Evaluated without a function call for live streams.
CREATE FUNCTION strata_refuse_retired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'strata: stream % is %', OLD.stream_id,
        CASE WHEN OLD.tombstoned_at IS NOT NULL THEN 'tombstoned' ELSE 'archived' END
        USING ERRCODE = 'SR001';
END $$;
CREATE TRIGGER strata_refuse_retired BEFORE UPDATE ON streams FOR EACH ROW
    WHEN ((OLD.tombstoned_at IS NOT NULL OR OLD.archived_at IS NOT NULL) AND NEW.version <> OLD.version)
    EXECUTE FUNCTION strata_refuse_retired();

-- The events of archived streams, until restored: each whole row of the
-- log as it was (the events table's row type, so that a column added to
-- events later is archived and restored with the rest), with its
-- position, stream and version beside it for lookups. Adding a column to
-- events keeps working; changing a column's type is refused by Postgres
-- while this table uses the row type (move the archived rows out first).
CREATE TABLE archived_events (
    position  bigint PRIMARY KEY,
    stream_id text   NOT NULL,
    version   bigint NOT NULL,
    event     events NOT NULL,
    CONSTRAINT archived_events_stream_version_key UNIQUE (stream_id, version)
);

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION strata_refuse_retired() SET search_path = %I, pg_temp', current_schema());
END $$;

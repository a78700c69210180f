-- Reads that cost what they return: a subscription of one category, or one
-- partition of a partitioned subscription, walks an index of its own events
-- (or keys) instead of scanning the whole log.
--
-- partition_key is the stream's partition hash, the one partitions have
-- always been computed from: a stream is in partition
-- partition_key % partitions of a subscription of any partition count, as
-- before this column existed, so checkpoints of existing partitioned
-- subscriptions keep their meaning. Postgres computes it at append
-- (GENERATED ... STORED): the append statements do not name it, and the
-- application role cannot write it.
--
-- The log index carries it (INCLUDE): a partition's read walks the index
-- in log order and keeps its own entries from the index alone (an
-- index-only scan), visiting the table only for the events it returns.
-- The category index is the log index within each category, with the key
-- too; it replaces 0031's partial index of messages, which it covers.
--
-- Cost on an existing log: adding a stored generated column rewrites the
-- events table and rebuilds its indexes under an ACCESS EXCLUSIVE lock,
-- then two indexes are built; appends and reads wait for the whole
-- migration (measured on a shared 2-core machine: 5 to 31 seconds per
-- million events; the archived events are rewritten twice besides). Run it
-- in a maintenance window on a large log.
--
-- Postgres refuses to rewrite a table whose row type another table's
-- column holds (archived_events.event, 0032): the archived rows are held
-- as text meanwhile, then read back as rows of the new type, their
-- partition_key NULL (Restore computes it again). Every archived row's
-- text ends with its last column and ')', so ',)' appends a NULL column.
ALTER TABLE archived_events ALTER COLUMN event TYPE text USING event::text;
ALTER TABLE events ADD COLUMN partition_key integer
    GENERATED ALWAYS AS (hashtext(stream_id) & 2147483647) STORED;
ALTER TABLE archived_events ALTER COLUMN event TYPE events USING (left(event, -1) || ',)')::events;

DROP INDEX events_log_idx;
CREATE INDEX events_log_idx ON events (transaction_id, position) INCLUDE (partition_key);

CREATE INDEX events_category_log_idx ON events (category, transaction_id, position) INCLUDE (partition_key);
DROP INDEX IF EXISTS events_message_log_idx;

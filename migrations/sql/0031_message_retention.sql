-- Retention of Pub/Sub messages (pubsub.Expirer). A topic's messages are
-- events of its category with the message event types; they are deleted
-- from the log in bounded batches once old enough and, unless asked
-- otherwise, once every subscription that reads them has passed them.

-- The expiry walks a topic's messages oldest first in log order. Partial:
-- appends of other events cost nothing; a message's append adds one
-- entry.
--
-- CREATE INDEX blocks appends while it builds. On a large existing log,
-- build it first without blocking, under the same name, and this file
-- then finds it:
--   CREATE INDEX CONCURRENTLY events_message_log_idx ON strata.events (category, transaction_id, position)
--     WHERE event_type IN ('watermill.message', 'watermill.message.base64');
CREATE INDEX IF NOT EXISTS events_message_log_idx ON events (category, transaction_id, position)
    WHERE event_type IN ('watermill.message', 'watermill.message.base64');

-- Deletes up to batch messages of category cat recorded more than min_age
-- ago, oldest first, and returns how many it deleted. Kept:
--
--   * unless unconsumed, a message some subscription selecting it (by
--     category and type, an empty list selecting all) has not passed: the
--     checkpoint of the partition owning its stream is before it. Readers
--     behind a deleted message were all past it, and a deleted row is only
--     ever one a reader has passed, so no reader skips a message that is
--     still in the log, and none sees one twice;
--   * the last message of each stream (the stream's row points at it, and
--     the next append continues its versions);
--   * a message that is a dead letter of any subscription (a retry reads
--     it again).
--
-- Only events of the message types are ever deleted: the function runs
-- with its owner's rights (the application role may not delete events),
-- and domain events are not its to touch. FOR UPDATE SKIP LOCKED: expiries
-- in many processes take disjoint rows instead of waiting on each other.
CREATE FUNCTION strata_expire_messages(cat text, min_age interval, unconsumed boolean, batch integer)
RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$
    WITH doomed AS (
        SELECT e.position FROM events e
        WHERE e.category = cat
          AND e.event_type IN ('watermill.message', 'watermill.message.base64')
          AND e.recorded_at < now() - min_age
          AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = e.stream_id AND s.version = e.version)
          AND (unconsumed OR NOT EXISTS (
              SELECT 1 FROM subscriptions sub
              WHERE (cardinality(sub.categories) = 0 OR cat = ANY (sub.categories))
                AND (cardinality(sub.event_types) = 0 OR e.event_type = ANY (sub.event_types))
                AND sub.partition = CASE WHEN sub.partitions <= 1 THEN 0
                    ELSE (hashtext(e.stream_id)::bigint & 2147483647) % sub.partitions END
                AND (sub.position_tx, sub.position_seq) < (e.transaction_id, e.position)))
          AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = e.event_id)
        ORDER BY e.category, e.transaction_id, e.position
        LIMIT greatest(batch, 0)
        FOR UPDATE OF e SKIP LOCKED),
    gone AS (DELETE FROM events e USING doomed d WHERE e.position = d.position RETURNING 1)
    SELECT count(*) FROM gone
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION strata_expire_messages(text, interval, boolean, integer) SET search_path = %I, pg_temp', current_schema());
END $$;

-- Read your own writes (eventstore.Store.WaitFor): every commit that moves
-- a subscription partition's checkpoint notifies, so that a process
-- waiting for a subscription to handle a position is woken by the commit
-- itself, in whichever process the subscription runs.
--
-- The channel is 'strata_checkpoints_' and the schema's name, or, when
-- that passes Postgres' 63 bytes, 'strata_checkpoints_' and the md5 of the
-- name (eventstore.Store.CheckpointChannel). It is taken from the table's
-- schema when the trigger runs, so a renamed schema keeps working.
--
-- The payload is "partitions/partition/position_tx/position_seq/name": the
-- name comes last, so that any character in it is unambiguous. pg_notify
-- is delivered at commit, and not at all when the transaction rolls back.
CREATE FUNCTION strata_notify_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ch text := 'strata_checkpoints_' || TG_TABLE_SCHEMA;
BEGIN
    IF octet_length(ch) > 63 THEN
        ch := 'strata_checkpoints_' || md5(TG_TABLE_SCHEMA);
    END IF;
    PERFORM pg_notify(ch, NEW.partitions || '/' || NEW.partition || '/' || NEW.position_tx || '/' || NEW.position_seq || '/' || NEW.name);
    RETURN NULL;
END $$;

-- Only a checkpoint that moved notifies: lease renewals and state changes
-- do not.
CREATE TRIGGER strata_notify_checkpoint AFTER UPDATE ON subscriptions FOR EACH ROW
    WHEN (NEW.position_tx IS DISTINCT FROM OLD.position_tx OR NEW.position_seq IS DISTINCT FROM OLD.position_seq)
    EXECUTE FUNCTION strata_notify_checkpoint();

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION strata_notify_checkpoint() SET search_path = %I, pg_temp', current_schema());
END $$;

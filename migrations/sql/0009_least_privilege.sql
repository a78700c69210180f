-- Least privilege that cannot forge the log (promise 8).
--
-- migrations.GrantApplication gives the application role column privileges
-- only: it cannot name events.position, events.transaction_id or
-- events.recorded_at (they take their defaults), nor rewrite a stream's ID,
-- category or creation time. What column privileges cannot express is
-- checked here, by the database, for every role that writes (the schema
-- owner too: the store's own statements always satisfy these checks):
--
--   * a stream's row moves only forward, to the writing transaction's ID
--     and time, and only to a version whose event is in the log by the end
--     of the statement that writes it;
--   * a snapshot is of a version the stream has;
--   * a subscription belongs to the role that registered it (app_role):
--     another application role cannot move its checkpoints, leases,
--     members, dead letters or rebuild, nor add partitions to it.
--
-- What an append pays for this: one foreign-key probe per stream row and
-- a few comparisons, no function call. Not checked: that events inserted
-- directly (without the stream's row, or past it) are the stream's next
-- versions. Such an insert still gets the database's transaction ID,
-- position and time, so every reader sees it in order; it can only leave
-- a gap in, or a conflict ahead of, the stream's versions. A check over
-- the inserted events of every statement (a statement trigger with a
-- transition table) closes that, but was measured to add a third to the
-- server time of a one-event append (202 -> 264 us median), so it is left
-- out.

-- Functions read tables with search_path fixed to this schema then pg_temp
-- (set at the end of this file), so a temporary table of the writer's
-- cannot stand in for streams or events.

-- A stream's row points at its last event: the version it records must be
-- in the log by the end of the statement that writes it, so no statement
-- can move a stream ahead of its events (checked by Postgres itself, one
-- index probe per row written). NOT VALID: rows written before this
-- migration are not checked again.
ALTER TABLE streams ADD CONSTRAINT streams_last_event_fkey
    FOREIGN KEY (stream_id, version) REFERENCES events (stream_id, version) NOT VALID;

-- An event's category is its stream ID's (eventstore.Category: up to the
-- first '-'), so that no event is filed under another category's
-- readers. NOT VALID: rows written before this migration are not checked
-- again.
ALTER TABLE events ADD CONSTRAINT events_category_check
    CHECK (category = split_part(stream_id, '-', 1)) NOT VALID;

-- A stream's row moves only forward, to the writing transaction's ID and
-- time, and keeps its ID, category and creation time. The WHEN clauses
-- are all of the check, evaluated without a function call; the function
-- only reports a refusal.
CREATE FUNCTION strata_refuse_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'strata: stream % may only be written by the append of its next events', NEW.stream_id
        USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER strata_guard_streams_insert BEFORE INSERT ON streams FOR EACH ROW
    WHEN (NEW.last_tx <> pg_current_xact_id()::text::bigint OR NEW.version < 1
          OR NEW.category <> split_part(NEW.stream_id, '-', 1))
    EXECUTE FUNCTION strata_refuse_stream();
CREATE TRIGGER strata_guard_streams_update BEFORE UPDATE ON streams FOR EACH ROW
    WHEN (NEW.last_tx <> pg_current_xact_id()::text::bigint OR OLD.last_tx > NEW.last_tx
          OR NEW.version <= OLD.version OR NEW.stream_id <> OLD.stream_id OR NEW.category <> OLD.category
          OR NEW.created_at <> OLD.created_at OR NEW.updated_at <> now())
    EXECUTE FUNCTION strata_refuse_stream();

-- A snapshot is of a version between 1 and the stream's, taken now.
CREATE FUNCTION strata_check_snapshot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.created_at <> now() THEN
        RAISE EXCEPTION 'strata: snapshot of stream % must be dated by the database', NEW.stream_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.version < 1 OR NOT EXISTS (
        SELECT 1 FROM streams s WHERE s.stream_id = NEW.stream_id AND s.version >= NEW.version) THEN
        RAISE EXCEPTION 'strata: snapshot of stream % at version %: the stream has no such version', NEW.stream_id, NEW.version
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER strata_check_snapshot BEFORE INSERT OR UPDATE ON snapshots
    FOR EACH ROW EXECUTE FUNCTION strata_check_snapshot();

-- Subscriptions belong to the role that registered them (app_role, which
-- the application role cannot write). Rows registered before this
-- migration (NULL) or by the schema's owner, its members or a superuser
-- are adopted by the first other role that writes them. The schema's owner
-- and superusers may change any row, app_role too (to hand a subscription
-- to another role). Writes to a role's own rows call no function (the
-- WHEN clauses below).
ALTER TABLE subscriptions ADD COLUMN app_role text;
ALTER TABLE subscriptions ALTER COLUMN app_role SET DEFAULT current_user;

-- Whether role_name (a role that may no longer exist) has the privileges
-- of the owner of table rel: the owner, its members, and superusers.
CREATE FUNCTION strata_is_admin(role_name text, rel oid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
        WHERE r.rolname = role_name AND c.oid = rel AND pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE'))
$$;

-- How many partition rows of subscription sub exist, and how many of them
-- belong to a role other than the current one (not the owner's, not
-- unowned).
CREATE FUNCTION strata_subscription_rows(sub text, OUT total bigint, OUT foreign_rows bigint) LANGUAGE sql STABLE AS $$
    SELECT count(*), count(*) FILTER (WHERE s.app_role <> current_user AND NOT strata_is_admin(s.app_role, 'subscriptions'::regclass))
    FROM subscriptions s WHERE s.name = sub
$$;

CREATE FUNCTION strata_guard_subscriptions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sub text := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
BEGIN
    IF NOT strata_is_admin(current_user, TG_RELID) THEN
        IF TG_OP = 'INSERT' THEN
            IF (strata_subscription_rows(sub)).foreign_rows > 0 THEN
                RAISE EXCEPTION 'strata: subscription % belongs to another role', sub USING ERRCODE = 'insufficient_privilege';
            END IF;
        ELSIF OLD.app_role IS NULL OR strata_is_admin(OLD.app_role, TG_RELID) THEN
            IF TG_OP = 'UPDATE' THEN
                NEW.app_role := current_user;
            END IF;
        ELSE
            RAISE EXCEPTION 'strata: subscription % belongs to role %', sub, OLD.app_role USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER strata_guard_subscriptions_insert BEFORE INSERT ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION strata_guard_subscriptions();
CREATE TRIGGER strata_guard_subscriptions_update BEFORE UPDATE ON subscriptions
    FOR EACH ROW WHEN (OLD.app_role IS DISTINCT FROM current_user::text OR NEW.app_role IS DISTINCT FROM OLD.app_role)
    EXECUTE FUNCTION strata_guard_subscriptions();
CREATE TRIGGER strata_guard_subscriptions_delete BEFORE DELETE ON subscriptions
    FOR EACH ROW WHEN (OLD.app_role IS DISTINCT FROM current_user::text)
    EXECUTE FUNCTION strata_guard_subscriptions();

-- The tables kept per subscription: a role may write rows of a
-- subscription that exists and is not another role's, and delete rows of
-- one that is not another role's. TG_ARGV[0] names the column holding the
-- subscription's name.
CREATE FUNCTION strata_guard_subscription_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sub text;
    r record;
BEGIN
    IF strata_is_admin(current_user, 'subscriptions'::regclass) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        sub := to_jsonb(OLD) ->> TG_ARGV[0];
        r := strata_subscription_rows(sub);
        IF r.foreign_rows > 0 THEN
            RAISE EXCEPTION 'strata: subscription % belongs to another role', sub USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        sub := to_jsonb(NEW) ->> TG_ARGV[0];
        r := strata_subscription_rows(sub);
        IF r.total = 0 OR r.foreign_rows > 0 THEN
            RAISE EXCEPTION 'strata: subscription % is not registered by this role', sub USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER strata_guard_subscription_rows BEFORE INSERT OR UPDATE OR DELETE ON subscription_members
    FOR EACH ROW EXECUTE FUNCTION strata_guard_subscription_rows('name');
CREATE TRIGGER strata_guard_subscription_rows BEFORE INSERT OR UPDATE OR DELETE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION strata_guard_subscription_rows('subscription');
CREATE TRIGGER strata_guard_subscription_rows BEFORE INSERT OR UPDATE OR DELETE ON projection_rebuilds
    FOR EACH ROW EXECUTE FUNCTION strata_guard_subscription_rows('subscription');

-- Fix every function's search_path: this schema, then pg_temp last, so
-- that no temporary table can shadow a table named above.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['strata_refuse_stream()', 'strata_check_snapshot()', 'strata_is_admin(text, oid)', 'strata_subscription_rows(text)',
            'strata_guard_subscriptions()', 'strata_guard_subscription_rows()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END $$;

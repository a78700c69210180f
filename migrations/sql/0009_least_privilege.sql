-- Least privilege that cannot forge the log (promise 8).
--
-- migrations.GrantApplication gives the application role column privileges
-- only: it cannot name events.position, events.transaction_id or
-- events.recorded_at (they take their defaults), nor rewrite a stream's ID,
-- category or creation time. What column privileges cannot express is
-- checked here, by the database, for every role that writes (the schema
-- owner too: the store's own statements always satisfy these checks):
--
--   * streams and events move together. Each statement that writes a
--     stream's row writes exactly the events between its old version and
--     its new one, in that same statement, and the row's last_tx is that
--     statement's transaction ID (never lower than it was);
--   * a snapshot is of a version the stream has;
--   * a subscription belongs to the role that registered it (app_role):
--     another application role cannot move its checkpoints, leases,
--     members, dead letters or rebuild, nor add partitions to it.
--
-- The checks on streams and events run once per statement, over the rows
-- the statement wrote (transition tables), not once per row.
--
-- Functions read tables with search_path fixed to this schema then pg_temp
-- (set at the end of this file), so a temporary table of the writer's
-- cannot stand in for streams or events.

-- The events a statement inserted are, for each of their streams, the
-- stream's last versions: (version - n, version] of a row the same
-- transaction wrote, and their category is their stream ID's.
CREATE FUNCTION strata_check_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT e.stream_id INTO bad
    FROM (SELECT stream_id, count(*) AS n, min(version) AS lo, max(version) AS hi,
                 bool_and(category = split_part(stream_id, '-', 1)) AS category_ok
          FROM new_events GROUP BY stream_id) e
    LEFT JOIN streams s ON s.stream_id = e.stream_id
    WHERE s.stream_id IS NULL OR NOT e.category_ok
       OR s.last_tx <> pg_current_xact_id()::text::bigint
       OR e.hi <> s.version OR e.lo <> s.version - e.n + 1
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'strata: events of stream % must be its next versions, appended with its row in one statement', bad
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER strata_check_events AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION strata_check_events();

-- A new stream row: version v > 0 with its first event in the same
-- statement (strata_check_events then holds the statement to exactly
-- versions 1..v), the transaction's own ID as last_tx, and the category of
-- its ID.
CREATE FUNCTION strata_check_streams_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT n.stream_id INTO bad FROM new_streams n
    WHERE n.last_tx <> pg_current_xact_id()::text::bigint
       OR n.category <> split_part(n.stream_id, '-', 1)
       OR NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = n.stream_id AND e.version = 1)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'strata: stream % must be created by the append of its first events', bad
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER strata_check_streams_insert AFTER INSERT ON streams
    REFERENCING NEW TABLE AS new_streams
    FOR EACH STATEMENT EXECUTE FUNCTION strata_check_streams_insert();

-- An updated stream row: same ID, a version that grew from v to w with
-- event v+1 in the log (strata_check_events then holds the statement to
-- exactly versions v+1..w), last_tx the transaction's own ID and not below
-- the previous one, updated_at the transaction's time.
CREATE FUNCTION strata_check_streams_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT n.stream_id INTO bad
    FROM new_streams n LEFT JOIN old_streams o ON o.stream_id = n.stream_id
    WHERE o.stream_id IS NULL
       OR n.last_tx <> pg_current_xact_id()::text::bigint OR o.last_tx > n.last_tx
       OR n.category <> o.category OR n.version <= o.version OR n.updated_at <> now()
       OR NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = n.stream_id AND e.version = o.version + 1)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'strata: stream % may only move by the append of its next events', bad
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER strata_check_streams_update AFTER UPDATE ON streams
    REFERENCING OLD TABLE AS old_streams NEW TABLE AS new_streams
    FOR EACH STATEMENT EXECUTE FUNCTION strata_check_streams_update();

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

-- Subscriptions belong to the role that registered them. Rows registered
-- before this migration have none, as do rows registered by the schema's
-- owner (or a superuser): the first other role that writes them adopts
-- them. The schema's owner and superusers may change any row, including
-- app_role (to hand a subscription to another role).
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

-- The WHEN clauses keep a role's writes to its own rows free of any call.
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
    FOREACH f IN ARRAY ARRAY['strata_check_events()', 'strata_check_streams_insert()', 'strata_check_streams_update()',
            'strata_check_snapshot()', 'strata_is_admin(text, oid)', 'strata_subscription_rows(text)',
            'strata_guard_subscriptions()', 'strata_guard_subscription_rows()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END $$;

-- Who appended each event: the audit columns.
--
-- principal is the authenticated user the application appended for
-- (eventstore.WithPrincipal on the append's context); NULL when none was
-- given. The application role writes it (a column privilege of
-- migrations.GrantApplication): the database cannot tell a true principal
-- from a false one that the application's own code sets, only keep it
-- well-formed and, with no UPDATE or DELETE on events, unchangeable once
-- written.
--
-- db_role is the database login that appended the event: session_user,
-- filled in by the column's default. No application role may name it in
-- an INSERT (it is not among the granted columns) or change it later, so
-- it is what the database itself vouches for, whatever the application
-- says: SET ROLE does not change session_user. Events appended before
-- this migration have NULL in both.
ALTER TABLE events ADD COLUMN IF NOT EXISTS principal text, ADD COLUMN IF NOT EXISTS db_role text;
ALTER TABLE events ALTER COLUMN db_role SET DEFAULT session_user;

-- Checked for new rows only (NOT VALID: no scan of the existing log).
ALTER TABLE events ADD CONSTRAINT events_principal_check
    CHECK (principal <> '' AND octet_length(principal) <= 256) NOT VALID;

-- "Who wrote this": a principal's events in log order
-- (eventstore.Store.ReadByPrincipal). Partial: events without a principal
-- cost nothing. On a large existing log, build it first without blocking
-- appends, under the same name, and this file then finds it:
--   CREATE INDEX CONCURRENTLY events_principal_idx ON strata.events (principal, transaction_id, position) WHERE principal IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_principal_idx ON events (principal, transaction_id, position) WHERE principal IS NOT NULL;

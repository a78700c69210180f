package migrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// GrantApplication gives role the least privileges an application needs
// to run Strata in schemaName: append and read events, keep snapshots, run
// subscriptions (projections, relays, Pub/Sub consumers) and their dead
// letters. Run it as the role that owns the schema, after Apply. The role
// must exist; run it again after a later Apply (new tables or columns).
//
// The role cannot forge the log (promise 8). It has no DDL, and no
// UPDATE, DELETE or TRUNCATE on events. It may insert events only without
// position, transaction_id and recorded_at, which take their defaults, so
// no event can be placed below a reader's checkpoint or back-dated. Its
// writes to streams and snapshots are column privileges too, and migration
// 0009 (a foreign key, a check and triggers, which bind every role) holds
// every write to streams to what an append does: a stream's version only
// grows, to a version whose event is in the log by the end of the
// statement, its last_tx is the writing transaction's ID, an event's
// category is its stream ID's, and a snapshot is of a version the stream
// has. Events inserted directly are not checked to be their stream's next
// versions (see the migration for why): such an event still gets the
// database's transaction ID, position and time.
//
// Subscriptions belong to the role that registered them: another role
// granted here may read their status but not move their checkpoints,
// leases, members, dead letters or rebuilds (an error says which role owns
// the subscription). Ownership needs no configuration, so that separate
// services sharing one schema, each with its own role, are kept apart.
// Subscriptions registered by the schema owner, or before migration 0009,
// are adopted by the first application role that runs them. To hand a
// subscription to another role (a role rotated out, say), the schema owner
// updates it: UPDATE <schema>.subscriptions SET app_role = 'new' WHERE
// name = '…'. Login roles that rotate should SET ROLE to one group role
// (pgxpool's AfterConnect) so that what they register belongs to the
// group.
//
// The statements it runs are those of GrantStatements, for teams that
// manage grants themselves.
func GrantApplication(ctx context.Context, pool *pgxpool.Pool, schemaName, role string) error {
	if err := errors.Join(CheckSchemaName(schemaName), checkRoleName(role)); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, stmt := range GrantStatements(schemaName, role) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migrations: grant to %q: %s: %w", role, stmt, err)
			}
		}
		return nil
	})
}

// columnGrants are the columns the application role may write in Strata's
// own tables: exactly those the store's statements write. Any other table
// of the schema (processed_messages, a read model) keeps full read and
// write access.
var columnGrants = []struct {
	table          string
	insert, update string
	delete         bool
}{
	{table: "events",
		insert: "event_id, stream_id, version, category, event_type, schema_version, data, metadata, correlation_id, causation_id, principal"},
	{table: "streams",
		insert: "stream_id, category, version, last_tx",
		update: "version, last_tx, updated_at"},
	{table: "snapshots",
		insert: "stream_id, version, schema_version, data",
		update: "version, schema_version, data, created_at",
		// Forgetting a data subject deletes its streams' snapshots (package shred).
		delete: true},
	{table: "subscriptions",
		insert: "name, partition, partitions, categories, event_types",
		update: "categories, event_types, position_tx, position_seq, owner, lease_until, state, last_error, events_handled, updated_at, resets",
		delete: true},
	{table: "subscription_members",
		insert: "name, owner, seen_until",
		update: "seen_until",
		delete: true},
	{table: "dead_letters",
		insert: "subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts, blocked_by",
		update: "retry_requested, attempts, error",
		delete: true},
	// Package shred's key table: an append inserts a subject's key, a
	// forget deletes it (migration 0056 refuses any other change); neither
	// deletes a row.
	{table: "subject_keys",
		insert: "subject, wrapped_key, forgotten_at",
		update: "wrapped_key, forgotten_at"},
	{table: "subject_streams",
		insert: "subject, stream_id"},
	{table: "projection_rebuilds",
		insert: "subscription, target_tx, target_seq, total",
		update: "target_tx, target_seq, total, started_at",
		delete: true},
}

// GrantStatements returns the statements of GrantApplication: read and
// write on every table of the schema, then, on Strata's own tables, writes
// taken back and granted again column by column (see GrantApplication),
// and no writes on schema_migrations.
func GrantStatements(schemaName, role string) []string {
	s := pgx.Identifier{schemaName}.Sanitize()
	r := pgx.Identifier{role}.Sanitize()
	out := []string{
		`GRANT USAGE ON SCHEMA ` + s + ` TO ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ` + s + ` TO ` + r,
		`GRANT USAGE ON ALL SEQUENCES IN SCHEMA ` + s + ` TO ` + r,
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ` + s + `.schema_migrations FROM ` + r,
		// Archived events are restored into the log as they are: only the
		// schema's owner may write them (eventstore.Store.Archive).
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ` + s + `.archived_events FROM ` + r,
	}
	for _, g := range columnGrants {
		t := s + `.` + pgx.Identifier{g.table}.Sanitize()
		// Revoking the table's privilege also revokes those of its
		// columns, so a second run starts from the same place.
		out = append(out, `REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON `+t+` FROM `+r)
		out = append(out, `GRANT INSERT (`+g.insert+`) ON `+t+` TO `+r)
		if g.update != "" {
			out = append(out, `GRANT UPDATE (`+g.update+`) ON `+t+` TO `+r)
		}
		if g.delete {
			out = append(out, `GRANT DELETE ON `+t+` TO `+r)
		}
	}
	return out
}

package cli

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/strata-go/strata/eventstore"
)

// audits looks up who appended events (principal and database role). A
// schema not yet migrated to the audit columns has none to show: the
// result is empty then, not an error.
func audits(ctx context.Context, store *eventstore.Store, events []eventstore.Event) (map[uuid.UUID]eventstore.Audit, error) {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	a, err := store.Audits(ctx, ids)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42703" { // undefined_column
		return map[uuid.UUID]eventstore.Audit{}, nil
	}
	return a, err
}

// auditLine is the text form of who appended an event: "" when nothing
// is known.
func auditLine(a eventstore.Audit) string {
	switch {
	case a.Principal != "" && a.Role != "":
		return display(a.Principal) + " (database role " + display(a.Role) + ")"
	case a.Principal != "":
		return display(a.Principal)
	case a.Role != "":
		return "(no principal; database role " + display(a.Role) + ")"
	}
	return ""
}

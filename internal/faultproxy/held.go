package faultproxy

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// held lists the server processes of one application name that hold a
// transaction ID, a snapshot or an advisory lock. A transaction held
// right after its BEGIN holds none of these.
const held = `SELECT pid::text || ' ' || coalesce(state, '?') || ': ' || left(query, 80) FROM pg_stat_activity
	WHERE application_name = $1 AND pid <> pg_backend_pid()
	  AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL
	       OR pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory'))`

// WaitNoneHeld waits until no server process of the connections named
// app (their application_name) holds a transaction ID, a snapshot or an
// advisory lock, and returns an error naming those that still do after
// d. Run it through a direct pool once a storm is over and the component
// under test has done its work: a process still holding one then belongs
// to a connection the client lost, and holds back every gap-safe reader
// of the cluster and whoever waits for its locks.
func WaitNoneHeld(ctx context.Context, direct *pgxpool.Pool, app string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		rows, err := direct.Query(ctx, held, app)
		if err != nil {
			return fmt.Errorf("faultproxy: list held server processes: %w", err)
		}
		what, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("faultproxy: list held server processes: %w", err)
		}
		if len(what) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("faultproxy: %d server processes of lost connections still in a transaction %v after the work was done: %q", len(what), d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

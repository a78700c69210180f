package projection

import (
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/sqltext"
	"github.com/strata-go/strata/internal/storeview"
)

// queries holds the SQL of the table this package owns,
// projection_rebuilds (migration 0005), with the schema filled in.
type queries struct {
	insertRebuild, setRebuildTotal, getRebuild, deleteRebuild, listRebuilds string
}

func buildQueries(store *eventstore.Store) queries {
	if store == nil {
		return queries{}
	}
	r := sqltext.Expander(storeview.Of(store).Schema)
	return queries{
		// Runs in the reset's transaction; a concurrent Rebuild of the same
		// projection (another process) ends up with the later target.
		insertRebuild: r.Replace(`INSERT INTO {schema}.projection_rebuilds (subscription, target_tx, target_seq, total) VALUES ($1, $2, $3, 0)
			ON CONFLICT (subscription) DO UPDATE SET target_tx = EXCLUDED.target_tx, target_seq = EXCLUDED.target_seq, total = 0, started_at = now()`),
		setRebuildTotal: r.Replace(`UPDATE {schema}.projection_rebuilds SET total = $2 WHERE subscription = $1`),
		getRebuild:      r.Replace(`SELECT target_tx, target_seq, total, started_at FROM {schema}.projection_rebuilds WHERE subscription = $1`),
		deleteRebuild:   r.Replace(`DELETE FROM {schema}.projection_rebuilds WHERE subscription = $1`),
		listRebuilds:    r.Replace(`SELECT subscription, target_tx, target_seq, total, started_at FROM {schema}.projection_rebuilds`),
	}
}

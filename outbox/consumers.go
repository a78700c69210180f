package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/sqltext"
)

// ConsumerStatus is what processed_messages says about one deduplicating
// consumer (a Deduplicator's DeduplicatorConfig.Consumer).
type ConsumerStatus struct {
	// Consumer is the consumer's name.
	Consumer string
	// Processed is how many message IDs it has recorded and not expired.
	Processed int64
	// LastProcessedAt is when it recorded its latest message.
	LastProcessedAt time.Time
}

// consumersSQL summarises processed_messages per consumer. It reads
// processed_messages_age_idx (consumer, processed_at) only, an index-only
// scan on a vacuumed table: the cost grows with the rows kept, which
// Deduplicator.Expire bounds.
const consumersSQL = `SELECT consumer, count(*), max(processed_at) FROM {schema}.processed_messages
	GROUP BY consumer ORDER BY consumer`

// Consumers returns the status of every deduplicating consumer recorded in
// the processed_messages table of schema ("" means "strata"), sorted by
// name: for operators' tools such as `strata status`.
func Consumers(ctx context.Context, pool *pgxpool.Pool, schema string) ([]ConsumerStatus, error) {
	if schema == "" {
		schema = "strata"
	}
	rows, err := pool.Query(ctx, sqltext.Expander(schema).Replace(consumersSQL))
	if err != nil {
		return nil, fmt.Errorf("outbox: consumers: %w", err)
	}
	var out []ConsumerStatus
	var c ConsumerStatus
	_, err = pgx.ForEachRow(rows, []any{&c.Consumer, &c.Processed, &c.LastProcessedAt}, func() error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: consumers: %w", err)
	}
	return out, nil
}

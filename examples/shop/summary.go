package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
)

// The read side: one row per order, kept up to date by the order_summary
// projection from the events of all three services.
const createSummary = `CREATE TABLE %s (
	order_id       text PRIMARY KEY,
	customer       text NOT NULL,
	email          text NOT NULL, -- personal: scrubbed when the customer is forgotten
	total_cents    bigint NOT NULL,
	currency       text NOT NULL,
	status         text NOT NULL, -- placed, paid, notified, cancelled
	correlation_id text NOT NULL,
	updated_at     timestamptz NOT NULL
)`

// summaryProjection builds the order_summary table. The runner calls the
// handler in the transaction that also moves the projection's checkpoint,
// so each event changes the table exactly once.
func summaryProjection(store *eventstore.Store, reg *schema.Registry) projection.Projection {
	table := store.Table("order_summary")
	handle := func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		v, err := reg.Decode(e) // OrderPlaced v1 events arrive upcast to v2
		if err != nil {
			return err
		}
		switch ev := v.(type) {
		case OrderPlaced:
			_, err = tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1, $2, $3, $4, $5, 'placed', $6, $7)
				ON CONFLICT (order_id) DO NOTHING`,
				strings.TrimPrefix(e.StreamID, "order-"), ev.Customer, ev.Email, ev.TotalCents, ev.Currency, e.Metadata.CorrelationID, e.RecordedAt)
		case PaymentCompleted:
			_, err = tx.Exec(ctx, `UPDATE `+table+` SET status = 'paid', updated_at = $2 WHERE order_id = $1 AND status = 'placed'`,
				ev.OrderID, e.RecordedAt)
		case OrderCancelled:
			_, err = tx.Exec(ctx, `UPDATE `+table+` SET status = 'cancelled', updated_at = $2 WHERE order_id = $1`,
				ev.OrderID, e.RecordedAt)
		case ConfirmationSent:
			_, err = tx.Exec(ctx, `UPDATE `+table+` SET status = 'notified', updated_at = $2 WHERE order_id = $1`,
				ev.OrderID, e.RecordedAt)
		}
		return err
	}
	return projection.Projection{
		Name:       "order_summary",
		Handler:    projection.HandlerFunc(handle),
		Categories: []string{"order", "payment", "notification"},
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `TRUNCATE `+table)
			return err
		},
		// A forgotten customer's email goes from the read model in the
		// transaction that deletes the customer's key (Runner.Forget).
		Forget: func(ctx context.Context, tx pgx.Tx, customer string) error {
			_, err := tx.Exec(ctx, `UPDATE `+table+` SET email = $2 WHERE customer = $1`, customer, schema.Erased)
			return err
		},
	}
}

// waitUntilNotified polls until the summary shows every one of want
// orders notified and the projection has nothing left to read, or the
// deadline passes.
func waitUntilNotified(ctx context.Context, store *eventstore.Store, runner *projection.Runner, want int, deadline time.Time) error {
	query := `SELECT count(*) FILTER (WHERE status = 'notified'), count(*) FROM ` + store.Table("order_summary")
	for {
		var notified, seen int
		if err := store.Pool().QueryRow(ctx, query).Scan(&notified, &seen); err != nil {
			return err
		}
		late := time.Now().After(deadline)
		if notified >= want || late {
			st, err := runner.Status(ctx)
			if err != nil {
				return err
			}
			if notified >= want && st[0].Lag == 0 {
				return nil
			}
			if late {
				return fmt.Errorf("%d of %d orders notified, %d in the summary, projection %s with a lag of %d events (see `strata status`)",
					notified, want, seen, st[0].State, st[0].Lag)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// printSummary prints the order_summary table.
func printSummary(ctx context.Context, store *eventstore.Store) error {
	rows, err := store.Pool().Query(ctx, `SELECT order_id, customer, total_cents, currency, status, correlation_id, updated_at
		FROM `+store.Table("order_summary")+` ORDER BY order_id`)
	if err != nil {
		return err
	}
	var (
		id, customer, currency, status, correlation string
		cents                                       int64
		updated                                     time.Time
	)
	fmt.Println()
	fmt.Println("order_summary (the read model, built by the projection):")
	fmt.Printf("  %-6s %-9s %9s  %-9s %-13s %s\n", "ORDER", "CUSTOMER", "TOTAL", "STATUS", "CORRELATION", "UPDATED")
	_, err = pgx.ForEachRow(rows, []any{&id, &customer, &cents, &currency, &status, &correlation, &updated}, func() error {
		fmt.Printf("  %-6s %-9s %9s  %-9s %-13s %s\n", id, customer, money(cents, currency), status, correlation,
			updated.Local().Format("15:04:05.000"))
		return nil
	})
	return err
}

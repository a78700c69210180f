package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/workflow"
)

// waitUntilFulfilled polls until every one of want orders has its
// fulfilment finished, its customer told (one notification stream per
// order: confirmed or cancelled), its outcome in the summary, and the
// projection has nothing left to read, or the deadline passes.
func waitUntilFulfilled(ctx context.Context, store *eventstore.Store, runner *projection.Runner, want int, deadline time.Time) error {
	query := `SELECT (SELECT count(*) FROM ` + store.Table("workflow_instances") + ` WHERE workflow = 'fulfilment' AND status = 'finished'),
		(SELECT count(*) FROM ` + store.Table("order_summary") + ` WHERE status IN ('notified', 'cancelled')),
		(SELECT count(*) FROM ` + store.Table("streams") + ` WHERE category = 'notification'),
		(SELECT count(*) FROM ` + store.Table("workflow_instances") + ` WHERE workflow = 'fulfilment')`
	for {
		var finished, settled, told, started int
		if err := store.Pool().QueryRow(ctx, query).Scan(&finished, &settled, &told, &started); err != nil {
			return err
		}
		settled = min(settled, told)
		late := time.Now().After(deadline)
		if (finished >= want && settled >= want) || late {
			st, err := runner.Status(ctx)
			if err != nil {
				return err
			}
			if finished >= want && settled >= want && st[0].Lag == 0 {
				return nil
			}
			if late {
				return fmt.Errorf("%d of %d orders fulfilled (%d started), %d settled in the summary and told (see `strata status`)",
					finished, want, started, settled)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// printFulfilment prints each order's path: its instance's events, and
// the settled orders' outcome.
func printFulfilment(ctx context.Context, store *eventstore.Store, orders []string) (paid, cancelled int, err error) {
	fmt.Println()
	fmt.Println("fulfilment (each order's path: the events of its workflow instance, stream fulfilment-<order>):")
	for _, id := range orders {
		var path []string
		for e, err := range store.ReadStream(ctx, "fulfilment-"+id, 0) {
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				break
			}
			if err != nil {
				return 0, 0, err
			}
			path = append(path, e.Type)
		}
		switch {
		case len(path) > 0 && path[len(path)-1] == "FulfilmentCompleted":
			paid++
		case len(path) > 0 && path[len(path)-1] == "FulfilmentCancelled":
			cancelled++
		}
		fmt.Printf("  %-6s %s\n", id, strings.Join(path, " → "))
	}
	return paid, cancelled, nil
}

// fulfilmentConfig is the workflow runner's configuration in the shop.
func fulfilmentConfig() *workflow.Config {
	return &workflow.Config{OnReaction: sayReaction, PollInterval: time.Second}
}

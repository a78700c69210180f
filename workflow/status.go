package workflow

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/sqltext"
	"github.com/strata-go/strata/internal/storeview"
)

// Stats is one workflow's state, for operators (`strata status`).
type Stats struct {
	// Workflow is the workflow's name.
	Workflow string `json:"workflow"`
	// Running and Finished count its instances by status.
	Running int64 `json:"running"`
	// Finished counts the instances that finished.
	Finished int64 `json:"finished"`
	// Queued counts the inputs routed to instances and not yet reacted to.
	Queued int64 `json:"queued"`
	// Parked counts the inputs and deadlines whose reactions kept failing:
	// their instances are stuck until they are retried (RetryInputs,
	// RetryDeadlines). Inputs the router itself could not route are the
	// dead letters of the subscription "workflow:NAME".
	Parked int64 `json:"parked"`
	// Deadlines counts the scheduled deadlines, Due those whose time has
	// come, Overdue those due for longer than the overdue threshold.
	Deadlines int64 `json:"deadlines"`
	// Due counts the deadlines whose time has come.
	Due int64 `json:"due"`
	// Overdue counts the deadlines due for longer than the threshold.
	Overdue int64 `json:"overdue"`
	// NextDue is the earliest scheduled deadline; zero when there is none.
	NextDue time.Time `json:"next_due,omitzero"`
}

// statusQuery counts every workflow's instances, inputs and deadlines in
// one statement; the workflows are those with an instance, an input or a
// deadline.
const statusQuery = `WITH i AS (
	SELECT workflow, count(*) FILTER (WHERE status = 'running') AS running, count(*) FILTER (WHERE status = 'finished') AS finished
	FROM {schema}.workflow_instances GROUP BY workflow
), q AS (
	SELECT workflow, count(*) FILTER (WHERE NOT failed) AS queued, count(*) FILTER (WHERE failed) AS parked
	FROM {schema}.workflow_inbox GROUP BY workflow
), d AS (
	SELECT workflow, count(*) AS deadlines, count(*) FILTER (WHERE failed) AS parked,
		count(*) FILTER (WHERE due_at <= $1 AND NOT failed) AS due,
		count(*) FILTER (WHERE due_at <= $1 - make_interval(secs => $2) AND NOT failed) AS overdue,
		min(due_at) FILTER (WHERE NOT failed) AS next_due
	FROM {schema}.workflow_deadlines GROUP BY workflow
)
SELECT w.workflow, coalesce(i.running, 0), coalesce(i.finished, 0), coalesce(q.queued, 0),
	coalesce(q.parked, 0) + coalesce(d.parked, 0), coalesce(d.deadlines, 0), coalesce(d.due, 0), coalesce(d.overdue, 0), d.next_due
FROM (SELECT workflow FROM i UNION SELECT workflow FROM q UNION SELECT workflow FROM d) w
LEFT JOIN i USING (workflow) LEFT JOIN q USING (workflow) LEFT JOIN d USING (workflow)
ORDER BY w.workflow`

// Status returns the state of every workflow in the store's schema, as
// of now: a deadline counts as overdue when it has been due for longer
// than overdue (0: any due deadline is overdue).
func Status(ctx context.Context, store *eventstore.Store, now time.Time, overdue time.Duration) ([]Stats, error) {
	q := sqltext.Expander(storeview.Of(store).Schema).Replace(statusQuery)
	rows, err := store.Pool().Query(ctx, q, now, overdue.Seconds())
	if err != nil {
		return nil, fmt.Errorf("workflow: status: %w", err)
	}
	var s Stats
	var next *time.Time
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Stats, error) {
		s, next = Stats{}, nil
		err := row.Scan(&s.Workflow, &s.Running, &s.Finished, &s.Queued, &s.Parked, &s.Deadlines, &s.Due, &s.Overdue, &next)
		if next != nil {
			s.NextDue = *next
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("workflow: status: %w", err)
	}
	return out, nil
}

// Status returns this workflow's state (see the package function).
func (r *Runner[S]) Status(ctx context.Context, overdue time.Duration) (Stats, error) {
	all, err := Status(ctx, r.store, r.cfg.Clock.Now(), overdue)
	if err != nil {
		return Stats{}, err
	}
	for _, s := range all {
		if s.Workflow == r.wf.Name {
			return s, nil
		}
	}
	return Stats{Workflow: r.wf.Name}, nil
}

package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/cli"
)

// status shows each workflow's instances, inputs and deadlines, and
// reports parked inputs and overdue deadlines as problems.
func TestStatusShowsWorkflows(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	ctx := context.Background()
	d.append("order-1", ev("OrderPlaced", `{}`))
	if r := want(t, d.strata("--json", "status"), cli.ExitOK); strings.Contains(r.stdout, `"workflows"`) {
		t.Fatalf("workflows reported before any ran:\n%s", r)
	}
	s := pgx.Identifier{d.db.Schema}.Sanitize()
	for _, q := range []string{
		`INSERT INTO ` + s + `.workflow_instances (workflow, instance_key, status, version) VALUES
			('fulfilment', '1', 'running', 1), ('fulfilment', '2', 'finished', 3), ('fulfilment', '3', 'running', 1)`,
		`INSERT INTO ` + s + `.workflow_deadlines (workflow, instance_key, name, due_at) VALUES
			('fulfilment', '1', 'payment', now() - interval '1 hour'), ('fulfilment', '3', 'payment', now() + interval '1 hour')`,
		`INSERT INTO ` + s + `.workflow_inbox (workflow, instance_key, event_id, stream_id, version, position_tx, position_seq,
			event_type, schema_version, data, recorded_at, failed, attempts) VALUES
			('fulfilment', '3', gen_random_uuid(), 'payment-3', 1, 1, 1, 'PaymentCompleted', 1, '{}', now(), true, 5)`,
	} {
		if _, err := d.db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	r := want(t, d.strata("status"), cli.ExitProblems)
	for _, w := range []string{"WORKFLOW", "fulfilment  2        1         0       1       2          1    1"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("status lacks %q:\n%s", w, r)
		}
	}
	for _, w := range []string{"workflow fulfilment has 1 parked input", "workflow fulfilment has 1 overdue deadline"} {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("status lacks the problem %q:\n%s", w, r)
		}
	}
	r = want(t, d.strata("--json", "status"), cli.ExitProblems)
	var js struct {
		Workflows []struct {
			Workflow                                          string
			Running, Finished, Queued, Parked, Deadlines, Due int64
			Overdue                                           int64
		} `json:"workflows"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || len(js.Workflows) != 1 || js.Workflows[0].Running != 2 ||
		js.Workflows[0].Parked != 1 || js.Workflows[0].Overdue != 1 || js.Workflows[0].Deadlines != 2 {
		t.Errorf("status --json: %v %+v\n%s", err, js, r)
	}
}

package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
)

// TestAuditShown appends under principals (one of them hostile to a
// terminal) as the least-privilege role and checks that `stream show` and
// `trace` name who appended each event, as text (escaped) and as JSON.
func TestAuditShown(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	app := eventstore.New(d.db.AppPool(t), &eventstore.Config{Schema: d.db.Schema})
	ctx := context.Background()
	with := func(e eventstore.NewEvent) eventstore.NewEvent {
		e.Metadata = eventstore.Metadata{CorrelationID: "req-1"}
		return e
	}
	const hostile = "mallory\x1b[2J\u202e"
	for _, p := range []string{"alice", "", hostile} {
		if _, err := app.Append(eventstore.WithPrincipal(ctx, p), "order-1", eventstore.Any, with(ev("Placed", `{}`))); err != nil {
			t.Fatal(err)
		}
	}
	role := d.db.Schema + "_app"
	r := want(t, d.strata("stream", "show", "order-1"), cli.ExitOK)
	checkTerminalSafe(t, "stream show", r.stdout)
	if !strings.Contains(r.stdout, "by          alice (database role "+role+")") ||
		!strings.Contains(r.stdout, "by          (no principal; database role "+role+")") ||
		!strings.Contains(r.stdout, `by          "mallory\x1b[2J\u202e" (database role `+role+")") {
		t.Fatalf("stream show does not say who appended:\n%s", r)
	}
	r = want(t, d.strata("--json", "stream", "show", "order-1"), cli.ExitOK)
	var out struct {
		Events []struct {
			Principal string `json:"principal"`
			DBRole    string `json:"db_role"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Events) != 3 || out.Events[0].Principal != "alice" || out.Events[1].Principal != "" || out.Events[2].Principal != hostile || out.Events[0].DBRole != role {
		t.Fatalf("stream show --json: %s", r.stdout)
	}
	r = want(t, d.strata("trace", "req-1"), cli.ExitOK)
	checkTerminalSafe(t, "trace", r.stdout)
	if !strings.Contains(r.stdout, "by alice (database role "+role+")") || strings.Count(r.stdout, "  by ") != 2 {
		t.Fatalf("trace does not say who appended:\n%s", r)
	}
}

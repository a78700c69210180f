package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/workflow"
	"github.com/strata-go/strata/workflow/workflowtest"
)

// The fulfilment workflow's decisions, given/when/then, without a
// database.
func TestFulfilmentDecisions(t *testing.T) {
	reg, err := newRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if err := registerFulfilment(reg); err != nil {
		t.Fatal(err)
	}
	f := workflowtest.New(t, fulfilmentWorkflow(3*time.Second), &workflowtest.Config{Registry: reg, Key: "42"})
	start := f.Given().Now()
	started := FulfilmentStarted{OrderID: "42", Customer: "ada", Email: "ada@example.com", TotalCents: 1999, Currency: "USD"}
	placed := OrderPlaced{Customer: "ada", Email: "ada@example.com", TotalCents: 1999, Currency: "USD"}

	// Order placed: payment requested, deadline set.
	f.Given().When(placed).Then(workflowtest.Expect{
		Events:   []any{started},
		Send:     []workflow.Message{workflow.Send("payment-42", PaymentRequested{OrderID: "42", AmountCents: 1999, Currency: "USD"})},
		Schedule: []workflow.Deadline{{Name: "payment", At: start.Add(3 * time.Second)}},
	})
	// Payment completed in time, then the confirmation: finished, and the
	// deadline never fires.
	s := f.Given(started).GivenDeadlines(workflow.Deadline{Name: "payment", At: start.Add(3 * time.Second)}).
		When(PaymentCompleted{OrderID: "42", AmountCents: 1999, Currency: "USD", Method: "card"})
	s.Then(workflowtest.Expect{
		Events: []any{PaymentConfirmed{Method: "card"}},
		Send:   []workflow.Message{workflow.Send("order-42", OrderConfirmed{OrderID: "42", AmountCents: 1999, Currency: "USD"})},
		Cancel: []string{"payment"},
	})
	s.When(ConfirmationSent{OrderID: "42", Email: "ada@example.com", Subject: "paid"}).
		Then(workflowtest.Expect{Events: []any{FulfilmentCompleted{}}, Finish: true})
	s.WhenTimePasses(time.Hour).Then(workflowtest.Expect{Fired: []string{}})

	// No payment in time: cancelled, the customer to be told.
	cancelled := workflowtest.Expect{
		Events: []any{FulfilmentCancelled{Reason: "payment not completed within 3s"}},
		Send:   []workflow.Message{workflow.Send("order-42", OrderCancelled{OrderID: "42", Reason: "payment not completed within 3s"})},
		Fired:  []string{"payment"},
		Finish: true,
	}
	s = f.Given().When(placed)
	s.WhenTimePasses(3 * time.Second).Then(cancelled)
	// A payment after that changes nothing.
	s.When(PaymentCompleted{OrderID: "42", AmountCents: 1999, Currency: "USD", Method: "card"}).Then(workflowtest.Expect{})

	// Declined: cancelled at once.
	f.Given(started).When(PaymentFailed{OrderID: "42", Reason: "card declined"}).Then(workflowtest.Expect{
		Events: []any{FulfilmentCancelled{Reason: "payment declined: card declined"}},
		Send:   []workflow.Message{workflow.Send("order-42", OrderCancelled{OrderID: "42", Reason: "payment declined: card declined"})},
		Finish: true,
	})
}

// The shop with the workflow owning the flow, some payments declined and
// some never answered: every order ends paid and confirmed or cancelled
// with the customer told, once, and its correlation ID traces its whole
// path, the timed-out ones through their deadline.
func TestShopFulfilment(t *testing.T) {
	t.Parallel()
	const orders = 6 // 1000 (seeded) … 1006
	name, out, errOut, code := runShop(t, "-workflow=true", "-orders", fmt.Sprint(orders), "-decline-every", "3",
		"-hang-every", "5", "-payment-timeout", "5s")
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	// 1000 and 1005 hang (1005 is a multiple of 3 too: hanging comes
	// first), 1002 is declined.
	outcome := map[string]string{"1000": "timeout", "1001": "paid", "1002": "declined", "1003": "paid",
		"1004": "paid", "1005": "timeout", "1006": "paid"}
	paths := map[string]string{
		"paid":     "FulfilmentStarted → PaymentConfirmed → FulfilmentCompleted",
		"declined": "FulfilmentStarted → FulfilmentCancelled",
		"timeout":  "FulfilmentStarted → FulfilmentCancelled",
	}
	for id, o := range outcome {
		if !regexp.MustCompile(`(?m)^  ` + id + ` +` + paths[o] + `$`).MatchString(out) {
			t.Errorf("order %s (%s): no path line %q", id, o, paths[o])
		}
	}
	if !strings.Contains(out, "All 7 orders placed: 4 paid and notified, 3 cancelled and the customer told.") {
		t.Errorf("no closing line")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
		return
	}

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: name})
	for _, m := range regexp.MustCompile(`(?m)^ +(\d+) +\S+ +\S+ +(notified|cancelled) +(req-[0-9a-f]{8}) `).FindAllStringSubmatch(out, -1) {
		id, status, correlation := m[1], m[2], m[3]
		events, err := store.ReadCorrelated(ctx, correlation, 100)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		byType := map[string]eventstore.Event{}
		for _, e := range events {
			if !strings.HasPrefix(e.StreamID, "wm.") {
				count[e.Type]++
				byType[e.Type] = e
			}
		}
		want := map[string]int{"OrderPlaced": 1, "FulfilmentStarted": 1, "PaymentRequested": 1}
		switch outcome[id] {
		case "paid":
			want["PaymentCompleted"], want["PaymentConfirmed"], want["OrderConfirmed"], want["ConfirmationSent"], want["FulfilmentCompleted"] = 1, 1, 1, 1, 1
		case "declined":
			want["PaymentFailed"], want["FulfilmentCancelled"], want["OrderCancelled"], want["CancellationSent"] = 1, 1, 1, 1
		case "timeout":
			want["FulfilmentCancelled"], want["OrderCancelled"], want["CancellationSent"] = 1, 1, 1
		}
		if fmt.Sprint(count) != fmt.Sprint(want) {
			t.Errorf("order %s (%s, %s): trace %v, want %v", id, outcome[id], status, count, want)
			continue
		}
		if outcome[id] == "timeout" && !strings.HasPrefix(byType["OrderCancelled"].Metadata.CausationID, "deadline:payment:") {
			t.Errorf("order %s: OrderCancelled caused by %q, want the deadline", id, byType["OrderCancelled"].Metadata.CausationID)
		}
		if byType["PaymentRequested"].Metadata.CausationID != byType["OrderPlaced"].ID.String() {
			t.Errorf("order %s: PaymentRequested caused by %q, want OrderPlaced %s", id, byType["PaymentRequested"].Metadata.CausationID, byType["OrderPlaced"].ID)
		}
	}
}

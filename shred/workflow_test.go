package shred_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/workflow"
)

// A workflow reaction's error that quotes its input is recorded in the
// inbox without the input's personal values (see
// TestHandlerErrorTextRedacted), and the input, queued there, is kept
// sealed (the router's subscription is Sealed).
func TestWorkflowErrorTextRedacted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wf := workflow.Workflow[struct{}]{
		Name:       "welcome",
		Categories: []string{"account"},
		Route: func(e eventstore.Event, ev any) (string, bool) {
			s, ok := ev.(Signup)
			return s.Customer, ok
		},
		Decide: func(_ struct{}, in workflow.Input) (workflow.Decision, error) {
			s := in.Event.(Signup)
			return workflow.Decision{}, errors.New("cannot welcome " + s.Email)
		},
		Evolve: func(s struct{}, _ any) struct{} { return s },
	}
	runner, err := workflow.New(f.store, f.reg, wf, &workflow.Config{MaxAttempts: 1, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.append(t, "account-ada", Signup{Customer: "c-ada", Email: "ada@example.com", Plan: "pro"})
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	var lastErr string
	pgtest.WaitFor(t, "the reaction's failure recorded", time.Minute, func() bool {
		err := f.db.Pool.QueryRow(ctx, `SELECT coalesce(max(last_error), '') FROM `+f.db.Schema+`.workflow_inbox`).Scan(&lastErr)
		return err == nil && lastErr != ""
	})
	cancel()
	<-done
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, []string{"ada@example.com"}); len(hits) > 0 || !strings.Contains(lastErr, "cannot welcome") {
		t.Fatalf("inbox error %q; plaintext in %v", lastErr, hits)
	}
}

// Package workflowtest tests workflows without a database: a Fixture runs
// given/when/then scenarios on a workflow's own Decide and Evolve, keeping
// and firing its deadlines as the runner would, and Clock is a clock that
// moves only when told, for tests of a workflow.Runner against Postgres.
//
//	f := workflowtest.New(t, fulfilment, &workflowtest.Config{Registry: reg, Key: "42"})
//	f.Given(Started{Order: "42"}).
//		WhenTimePasses(15 * time.Minute).
//		Then(workflowtest.Expect{
//			Events: []any{TimedOut{}},
//			Send:   []workflow.Message{workflow.Send("order-42", OrderCancelled{Reason: "payment timed out"})},
//			Fired:  []string{"payment"},
//			Finish: true,
//		})
//
// Steps chain: When and WhenTimePasses may follow each other, each on the
// instance the previous left, and Then checks the last one.
package workflowtest

// Package aggregatetest tests aggregates in memory with given/when/then
// scenarios: given these past events, when this command runs, then expect
// these events, or this error.
//
// # Scenarios
//
//	func TestPay(t *testing.T) {
//		orders := aggregatetest.New(t, newOrder, &aggregatetest.Config{Registry: reg})
//
//		orders.Given(OrderPlaced{Total: 30}).
//			When(func(o *Order) error { return o.Pay(30) }).
//			Then(OrderPaid{Amount: 30})
//
//		orders.Given().
//			When(func(o *Order) error { return o.Pay(30) }).
//			ThenError(ErrNotPlaced)
//	}
//
// Given builds the aggregate from past events, as a load would; When runs
// the command as Repository.Update would; Then compares the raised events
// with the expected ones, by Go type and JSON encoding, in order. With a
// Registry in the Config, events also go through it: a given event it
// refuses stops the test, and a raised event it would refuse fails it.
// Scenario.Aggregate returns the aggregate for checks of its state.
//
// # Failure output
//
// A mismatch is reported as a line diff of the expected and the raised
// events, each written as its Go type and indented JSON, so that the line
// marked - (expected) and + (raised) is the field that differs:
//
//	aggregatetest: events differ (-want +got):
//	    orders.OrderShipped {
//	  -   "carrier": "ups"
//	  +   "carrier": "dhl"
//	    }
//
// An error where events were expected, or events where an error was,
// names what happened instead.
package aggregatetest

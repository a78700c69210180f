// Command shop is the event-driven shop, end to end, on Strata:
//
//	go run ./examples/shop
//
// An order service places orders: its Order aggregate emits OrderPlaced.
// The outbox relay publishes every committed event to a broker. A payment
// service consumes OrderPlaced, charges the order with its Payment
// aggregate and emits PaymentCompleted, which the relay publishes in
// turn. A notification service consumes PaymentCompleted and "sends" the
// confirmation email (it prints it) and records ConfirmationSent. The
// order_summary projection builds the read side from all of it, and the
// program prints that table at the end.
//
// Both consumers are Watermill router handlers wrapped in
// outbox.Deduplicate: a message delivered twice has one effect. Every
// event carries the correlation ID of the order that caused it and the ID
// of the event that caused it, so that
//
//	strata --schema shop trace <correlation ID>
//
// shows the order → payment → notification chain. Event schemas are files
// under schemas/; one order is seeded the way an older release stored it
// (OrderPlaced v1) and is upcast whenever it is read.
//
// It uses DATABASE_URL, or postgres://postgres@127.0.0.1:5432/test, and
// recreates the Postgres schema "shop" at start, leaving it afterwards
// for `strata --schema shop status`. Flags:
//
//	-orders N        orders to place (default 3)
//	-follow          keep placing an order every second until Ctrl-C
//	-broker B        postgres (default: Strata's Pub/Sub on the event store),
//	                 gochannel, nats://127.0.0.1:4222, amqp://guest:guest@127.0.0.1:5672/
//	                 or kafka://127.0.0.1:9092
//	-timeout D       give up (exit 1) when the orders are not all notified by then (default 60s)
//	-schema S        the Postgres schema (default shop)
//	-topics P        the broker topics' prefix (default shop)
//	-workflow        let the fulfilment workflow own each order's flow (default true;
//	                 false: the payment service charges on OrderPlaced itself)
//	-decline-every N the card network declines every Nth order (default 0: none)
//	-hang-every N    the card network never answers every Nth order (default 0: none)
//	-payment-timeout D  how long the workflow waits for a payment before it
//	                 cancels the order (default 3s)
//
// With the workflow (fulfilment.go), each order is an instance with its
// own stream, fulfilment-<order id>: order placed → payment requested →
// payment completed → confirmation sent, finished; or a declined or
// unanswered payment → order cancelled (its deadline fired) and the
// customer told. `strata trace` shows the whole path.
//
//	-http ADDR       also serve POST /orders on ADDR, answering with the
//	                 order's read-model row once the projection has it (http.go)
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/shred"
	"github.com/strata-go/strata/workflow"
)

type options struct {
	orders  int
	follow  bool
	broker  string
	timeout time.Duration
	schema  string
	topics  string

	workflow       bool
	declineEvery   int
	hangEvery      int
	paymentTimeout time.Duration
	http           string
}

func main() {
	var o options
	flag.IntVar(&o.orders, "orders", 3, "orders to place")
	flag.BoolVar(&o.follow, "follow", false, "keep placing an order every second until Ctrl-C")
	flag.StringVar(&o.broker, "broker", "postgres", "postgres, gochannel, nats://…, amqp://… or kafka://…")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "exit 1 when the orders are not all notified by then")
	flag.StringVar(&o.schema, "schema", "shop", "Postgres schema, recreated at start")
	flag.StringVar(&o.topics, "topics", "shop", "prefix of the broker's topics")
	flag.BoolVar(&o.workflow, "workflow", true, "let the fulfilment workflow own each order's flow")
	flag.IntVar(&o.declineEvery, "decline-every", 0, "the card network declines every Nth order")
	flag.IntVar(&o.hangEvery, "hang-every", 0, "the card network never answers every Nth order")
	flag.DurationVar(&o.paymentTimeout, "payment-timeout", 3*time.Second, "how long the workflow waits for a payment")
	flag.StringVar(&o.http, "http", "", "serve POST /orders on this address (read your own writes)")
	flag.Parse()

	// Warnings and errors of the libraries go to stderr; the account of
	// what happened goes to stdout.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	deadline := time.Now().Add(o.timeout)
	pool, err := pgxpool.New(ctx, cmp.Or(os.Getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test"))
	if err != nil {
		return err
	}
	defer pool.Close()

	// A fresh schema each run: Strata's tables, then our read model's.
	schemaName := pgx.Identifier{o.schema}.Sanitize()
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+schemaName+` CASCADE`); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := migrations.Apply(ctx, pool, o.schema); err != nil {
		return err
	}
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	if err := registerFulfilment(reg); err != nil {
		return err
	}
	// The store validates every event against its schema before appending,
	// and stores the personal fields the schemas declare (the customer's
	// email) encrypted under the customer's key (package shred).
	shredder := shred.New(pool, &shred.Config{Schema: o.schema, Registry: reg})
	store := eventstore.New(pool, &eventstore.Config{Schema: o.schema, Validator: reg, Sealer: shredder, Opener: shredder})
	if _, err := pool.Exec(ctx, fmt.Sprintf(createSummary, store.Table("order_summary"))); err != nil {
		return err
	}

	wmLogger := watermill.NewSlogLogger(slog.Default())
	brk, err := openBroker(ctx, o.broker, store, o.topics, wmLogger)
	if err != nil {
		return err
	}
	defer brk.Publisher.Close()
	say("shop", "", "Postgres schema %q recreated; broker: %s", o.schema, brk.Name)

	// The three services.
	orders := newOrderService(store, reg)
	payments := newPaymentService(store, reg)
	notifications := newNotificationService(store, reg, orders.repo)

	// The consumers: one Watermill handler per service, each made
	// idempotent by outbox.Deduplicate (processed message IDs in Postgres,
	// in the handler's transaction).
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, wmLogger)
	if err != nil {
		return err
	}
	consumers := []struct {
		service, category string
		handle            message.NoPublishHandlerFunc
	}{
		{"payment", "order", payments.Handle},
		{"notification", "payment", notifications.Handle},
	}
	if o.workflow {
		// The workflow asks for payments, and confirms or cancels orders.
		consumers[0].category, consumers[0].handle = "payment", payments.HandleRequest(gateway{o.declineEvery, o.hangEvery})
		consumers[1].category, consumers[1].handle = "order", notifications.HandleOrderOutcome
	}
	for _, c := range consumers {
		sub, err := brk.Subscriber(c.service)
		if err != nil {
			return err
		}
		h := router.AddConsumerHandler(c.service, brk.Topic(c.category), sub, c.handle)
		h.AddMiddleware(outbox.Deduplicate(pool, o.schema, c.service))
	}

	// The relay publishes order and payment events, each to its topic.
	relay := outbox.NewRelay(store, brk.Publisher, &outbox.Config{
		Categories: []string{"order", "payment"},
		Topic:      func(e eventstore.Event) string { return brk.Topic(e.Category()) },
		Permanent:  brk.Permanent,
	})
	// The read side.
	runner := projection.NewRunner(store, []projection.Projection{summaryProjection(store, reg)}, nil)
	fulfilment, err := workflow.New(store, reg, fulfilmentWorkflow(o.paymentTimeout), fulfilmentConfig())
	if err != nil {
		return err
	}

	// The workers run until the orders are done, even after Ctrl-C, which
	// only stops -follow from placing more.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	failed := make(chan error, 4)
	start := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			if err := fn(workCtx); err != nil && workCtx.Err() == nil {
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	defer func() {
		stopWork()
		_ = router.Close()
		wg.Wait()
	}()
	start("router", router.Run)
	// The services subscribe before the relay publishes anything (the
	// GoChannel broker drops messages nobody subscribed to yet).
	select {
	case <-router.Running():
	case err := <-failed:
		return err
	case <-time.After(time.Until(deadline)):
		return fmt.Errorf("not done within %s: the consumers did not even start", o.timeout)
	}
	start("relay", relay.Run)
	start("projection", runner.Run)
	if o.workflow {
		start("fulfilment", fulfilment.Run)
	}
	if o.http != "" {
		srv := &http.Server{Addr: o.http, Handler: ordersHandler(store, reg, runner, 5*time.Second), ReadHeaderTimeout: 5 * time.Second}
		start("http", func(ctx context.Context) error {
			go func() { <-ctx.Done(); _ = srv.Close() }()
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		say("shop", "", "serving POST /orders on %s", o.http)
	}

	// History from an older release, then today's orders.
	if err := orders.SeedLegacy(ctx, "1000"); err != nil {
		return err
	}
	placed := 1
	for i := range o.orders {
		if err := placeOrder(ctx, orders, 1001+i); err != nil {
			return err
		}
		placed++
	}
	if o.follow {
		say("shop", "", "placing an order every second; Ctrl-C to stop")
		tick := time.NewTicker(time.Second)
		for next := 1001 + o.orders; ; next++ {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			if err := placeOrder(workCtx, orders, next); err != nil {
				return err
			}
			placed++
		}
		tick.Stop()
		// Wait for the orders in flight; a second Ctrl-C ends the program.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		say("shop", "", "stopped placing orders; waiting for the %d placed to be notified", placed)
		ctx, deadline = workCtx, time.Now().Add(o.timeout)
	}

	waited := make(chan error, 1)
	go func() {
		if o.workflow {
			waited <- waitUntilFulfilled(ctx, store, runner, placed, deadline)
			return
		}
		waited <- waitUntilNotified(ctx, store, runner, placed, deadline)
	}()
	select {
	case err := <-waited:
		if ctx.Err() != nil {
			return errors.New("interrupted before every order was notified")
		}
		if err != nil {
			return fmt.Errorf("not done within %s: %w", o.timeout, err)
		}
	case err := <-failed:
		return err
	}
	if err := printSummary(workCtx, store); err != nil {
		return err
	}
	if o.workflow {
		ids := make([]string, placed)
		for i := range ids {
			ids[i] = strconv.Itoa(1000 + i)
		}
		paid, cancelled, err := printFulfilment(workCtx, store, ids)
		if err != nil {
			return err
		}
		fmt.Printf("\nAll %d orders placed: %d paid and notified, %d cancelled and the customer told. The schema %q stays for inspection:\n",
			placed, paid, cancelled, o.schema)
	} else {
		fmt.Printf("\nAll %d orders placed, paid and notified. The schema %q stays for inspection:\n", placed, o.schema)
	}
	fmt.Printf("  go run ./cmd/strata --schema %s status\n", o.schema)
	fmt.Printf("  go run ./cmd/strata --schema %s trace <CORRELATION>   (with DATABASE_URL set)\n", o.schema)
	return nil
}

// The customers who place the orders, in turn, and what they spend.
var customers = []struct {
	name  string
	cents int64
}{{"ada", 1999}, {"grace", 3450}, {"linus", 1200}, {"ken", 875}, {"barbara", 5600}}

func placeOrder(ctx context.Context, orders *orderService, n int) error {
	c := customers[n%len(customers)]
	return orders.Place(ctx, strconv.Itoa(n), c.name, c.cents+int64(n%7)*100)
}

var sayMu sync.Mutex

// say prints one line of the account: who did what to which order.
func say(who, order, format string, args ...any) {
	sayMu.Lock()
	defer sayMu.Unlock()
	fmt.Printf("%-12s %-5s %s\n", who, order, fmt.Sprintf(format, args...))
}

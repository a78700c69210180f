// Package aggregate models a domain as event-sourced aggregates: typed
// state rebuilt from its events, commands that raise new events, and a
// Repository that loads and saves them in the event store with optimistic
// concurrency, so that no write is lost and none silently overwritten.
//
// # Aggregates
//
// An aggregate is a struct that embeds Root (by value) and has an Apply
// method. Commands are its other methods: they check the rules against the
// current state and call Raise, which records the event and applies it.
// Apply changes state only: no checks, no I/O, no errors, no Raise.
//
//	type Order struct {
//		aggregate.Root
//		Status string
//	}
//
//	func (o *Order) Apply(ev any) {
//		switch ev.(type) {
//		case OrderPlaced:
//			o.Status = "placed"
//		case OrderPaid:
//			o.Status = "paid"
//		}
//	}
//
//	func (o *Order) Pay(amount int) error {
//		if o.Status != "placed" {
//			return ErrNotPayable
//		}
//		o.Raise(OrderPaid{Amount: amount})
//		return nil
//	}
//
// Events are plain Go values of types registered in a schema.Registry.
// Raise takes values, never pointers, because loaded events are values:
// Apply sees the same types either way.
//
// The repository wires each aggregate it makes or loads to its Apply
// method; there is no reflection over methods and no code generation.
// Raise on an aggregate made with a struct literal panics with a message
// saying so: make aggregates with Repository.New, Load or Update, or, in
// memory, with Rehydrate.
//
// # Repository
//
//	newOrder := func(id string) *Order { return &Order{} }
//	repo := aggregate.NewRepository(store, reg, newOrder, &aggregate.Config{SnapshotEvery: 100})
//
//	o, err := repo.Load(ctx, "42")  // *Order, or an error matching ErrNotFound
//	err = o.Pay(100)
//	err = repo.Save(ctx, o)         // appends the pending events, expecting version o.Version()
//
// Each aggregate has its own stream, named by the repository's category
// and the aggregate's ID: "order-42". The category defaults to the
// lower-cased Go type name; Config.Category changes it.
//
// Load reads the stream (from the latest snapshot, when snapshots are on),
// decodes each event with the registry, upcasting old versions, and
// applies it. Save appends the pending events in one atomic append that
// expects the stream to be at the aggregate's version (no stream at all for
// a new aggregate), so a concurrent writer makes it fail with an error
// matching eventstore.ErrConflict, and nothing is written.
//
// # Update and conflicts
//
// Most commands are best run with Update, which loads, runs the command
// and saves, and on a conflict loads again and reruns the command after a
// short random wait that grows with each conflict, until it succeeds or
// the context ends (Config.MaxRetries caps the reruns):
//
//	err := repo.Update(ctx, "42", func(o *Order) error { return o.Pay(amount) })
//
// The command may therefore run more than once: it must only change the
// aggregate. When it returns an error, nothing is written and Update
// returns that error as is. Update on an ID without events runs the
// command on a new aggregate (Version() == 0), so one Update both creates
// and changes aggregates; Load of such an ID returns ErrNotFound instead.
//
// # Transactions
//
// LoadTx, SaveTx and UpdateTx work in the caller's pgx transaction, so
// that the events commit together with whatever else it writes (rows of a
// read model, a processed-message marker), or not at all. UpdateTx makes
// one attempt: it cannot undo the rest of the transaction, so on a
// conflict it returns the error and the caller retries the whole
// transaction.
//
// # Several aggregates in one transaction
//
// UnitOfWork changes several aggregates, of one type or several, in one
// transaction with the retries done for you: its function loads them
// through a Session (Get, GetOrNew, Track), and their events are appended
// together when it returns nil. It locks the streams it writes in a fixed
// order, so Strata's statements cannot deadlock, and reruns the function
// on a conflict, eventstore.ErrOutOfOrder, ErrDeadlock or
// ErrSerialization:
//
//	uow := aggregate.NewUnitOfWork(store, nil)
//	err := uow.Run(ctx, func(ctx context.Context, s *aggregate.Session) error {
//		from, err := aggregate.Get(ctx, s, accounts, "alice")
//		if err != nil {
//			return err
//		}
//		to, err := aggregate.Get(ctx, s, accounts, "bob")
//		if err != nil {
//			return err
//		}
//		return Transfer(from, to, 2599)
//	})
//
// Use it for an invariant that must hold across a few aggregates at every
// commit; for steps that may follow one another (with compensation, or
// waiting for time or other services), a workflow reacting to events is
// the better tool. See UnitOfWork.
//
// # Snapshots
//
// With Config.SnapshotEvery set, a save that carries the aggregate's
// version across a multiple of it stores a snapshot of the aggregate
// (eventstore.Store.SaveSnapshot), and loads start from the latest
// snapshot and read only the events after it. The snapshot is taken after
// the append has returned, so it never holds it back; one that fails is
// logged and the save still succeeds.
//
// A snapshot is the aggregate encoded with encoding/json: its exported
// fields, or whatever its MarshalJSON writes. Root's fields are not part
// of it. Config.SnapshotVersion versions that encoding: bump it whenever
// the state struct changes shape, and loads ignore the older snapshots and
// rebuild from events (Config.OnLoad reports that, and what each load
// read).
//
// # Metadata
//
// Every saved event carries eventstore.Metadata: a correlation ID, a
// causation ID and free string pairs. They come from the context, set
// once per request with WithMetadata, and from per-call Opts:
//
//	ctx = aggregate.WithMetadata(ctx, eventstore.Metadata{CorrelationID: requestID})
//	err := repo.Update(ctx, "42", pay, aggregate.Opts{Metadata: eventstore.Metadata{CausationID: cmd.ID}})
//
// # The past
//
// LoadAt rebuilds an aggregate as it was at a version or at a time, from
// its events, for audits and debugging.
//
// # Testing
//
// Package aggregatetest runs given/when/then scenarios on aggregates in
// memory, and reports a mismatch as a diff of the expected and the raised
// events.
package aggregate

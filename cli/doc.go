// Package cli is the strata command line: the operator's view of a Strata
// event store and the levers to steer it. The standalone binary
// (cmd/strata) is a two-line main around it; a service embeds the same
// commands in its own binary, where the commands that need the service's
// code — projection rebuild and schema check — work too.
//
//	go install github.com/strata-go/strata/cmd/strata@latest
//
// # Connecting
//
// Every command takes the connection string from --database-url or, when
// that is not given, DATABASE_URL, in URL or key=value form; libpq's
// parameters (sslmode=verify-full with sslrootcert, …) and PG* variables
// work as with psql. --schema names the Postgres schema holding Strata's
// tables (default "strata"). The password is never printed: where a
// connection string is echoed (in errors, in stored handler errors) its
// password is masked as "xxxxx", found by reading the string as libpq does
// (the URL's userinfo and password parameters, key=value password
// settings), even when it does not parse — never by searching the output
// for the password's text, so a password like "0" leaves the rest intact.
//
// # Hostile text
//
// Stream IDs, types, metadata, payloads, subscription names and error
// texts come from whoever could write to the database. Anything a terminal
// would obey rather than show — control characters, ESC and CSI sequences,
// OSC 8 links, C1 controls, bidi overrides — is never printed raw: a value
// holding one is printed as a quoted Go string ("evil-\x1b[31m"), JSON
// output escapes it (\u009b), and readable text is printed as it is.
// status names a backend holding readers back by pid, database,
// application and state; its query text (another session's SQL, literals
// included) is never printed.
//
// # Commands
//
//	migrate                       create or upgrade the tables (idempotent, safe from many processes)
//	status                        log size and head; per subscription: checkpoint, lag, state, owner, dead letters
//	events tail [-c CAT] [-t TYPE] [-n N] [-f]
//	                              the last N events, and with --follow the ones that come
//	stream show ID [--from V]     one stream's events with metadata
//	trace CORRELATION_ID          the causal tree of the events one request caused, with timings
//	dead-letters list [-s SUB]    parked events, oldest first
//	dead-letters retry SUB [--stream ID]
//	                              ask the processes running SUB to retry them
//	projection reset NAME --to POS
//	                              move a projection's (or any subscription's) checkpoint
//	projection rebuild NAME       wipe and replay a read model with a progress bar (embedded only)
//	schema check                  check the registry and decode every stored event (embedded only)
//	ui [--listen ADDR] [--actions]
//	                              the web dashboard (package dashboard): loopback, read-only by default
//
// Subscriptions are how everything reads the log: projections appear as
// "projection:NAME", the outbox relay and Pub/Sub consumer groups under
// their own names. status shows each partition's state: running (a
// process holds its lease), failing (its handler keeps failing on an
// event and is retrying it), stopped (the processes running it left) or
// idle (never run, or released). When an open transaction holds gap-safe
// readers back for longer than --horizon-age, status names its backend.
// When the database's transaction IDs are behind those in the log or a
// checkpoint (a logical dump restored into a new cluster: new events
// would never be delivered), status starts with a warning that names the
// fix (pg_resetwal -e) and exits with 3.
//
// Positions print and parse as "TXID/SEQ" (eventstore.Position), as
// status shows them; "0" is the start of the log.
//
// events tail reads the log as a gap-safe reader does and leaves no
// checkpoint behind: it is safe to run against production at any time.
//
// trace reads every event whose correlation ID is the one given (an
// index added by migration 0003 serves it) and places each under the event
// its causation ID names; events caused by something outside the trace (a
// command, an HTTP request) are roots. Each line shows the time since the
// first event and since its cause.
//
// # Output and exit codes
//
// Tables for people by default; --json prints JSON for scripts (events
// tail --json prints one object per line). Errors go to stderr as
// "strata: message". Exit codes:
//
//	0  ok (ExitOK)
//	1  error: no connection, a failed query or rebuild (ExitError)
//	2  usage: bad command line, or a command this binary cannot run (ExitUsage)
//	3  problems found: status saw a failing subscription, dead letters, a lag
//	   beyond --max-lag / --max-lag-time, or transaction IDs behind the log's;
//	   schema check saw failures (ExitProblems)
//	4  not found: stream show, trace, projection reset|rebuild, dead-letters retry (ExitNotFound)
//
// so that a health check can be `strata status --max-lag-time 1m`.
//
// # A session
//
//	$ export DATABASE_URL=postgres://app:s3cret@db.internal:5432/shop?sslmode=verify-full
//	$ strata migrate
//	schema "strata" is at migration 5 (0005_projection_rebuilds.sql)
//	$ strata status
//	Schema strata: 4 streams, 5 events, head 745816/5 (last event 271ms ago)
//
//	SUBSCRIPTION              PARTITION  CHECKPOINT  LAG  LAG TIME  STATE    OWNER  DEAD LETTERS  HANDLED
//	outbox                    0/1        745816/5    0    -         stopped  -      1             4
//	projection:order_summary  0/1        745391/4    1    256ms     stopped  -      0             4
//
//	Problems: 1 dead letter
//	strata: status found problems: 1 dead letter
//	$ echo $?
//	3
//	$ strata events tail -n 2
//	2026-11-25T22:01:22.024Z  745391/4        order-42@2  OrderShipped  {"order_id":"42"}
//	2026-11-25T22:01:22.164Z  745816/5        order-43@1  OrderPlaced  {"order_id":"43","cents":1200}
//	$ strata trace req-7f3a
//	Trace req-7f3a: 3 events in 3 streams over 84ms
//	OrderPlaced  order-42@1  +0s (caused by cmd-place-42)
//	└─ PaymentCompleted  payment-42@1  +53ms (53ms after its cause)
//	   └─ ConfirmationSent  notification-42@1  +84ms (31ms after its cause)
//	$ strata dead-letters list
//	ID  SUBSCRIPTION  PARTITION  POSITION  STREAM           TYPE              ATTEMPTS  PARKED                    RETRY  ERROR
//	1   outbox        0          745385/3  notification-42  ConfirmationSent  1         2026-11-25T22:01:22.269Z  -      nats: no responders available for request
//	$ strata dead-letters retry outbox
//	1 dead letter of outbox marked for retry
//	$ strata projection reset order_summary --to 0
//	projection:order_summary reset to 0/0
//	The read model was left as it is: its handler will see the events after that position again.
//	$ strata projection rebuild order_summary
//	strata: projection rebuild needs the projections' code: run it from a CLI embedded in your program (…)
//
// # Embedding
//
// Projections and schemas live in the service's code, so the service
// offers the CLI in its own binary, say behind an "admin" argument:
//
//	if len(os.Args) > 1 && os.Args[1] == "admin" {
//		c := cli.New(&cli.Config{Name: "shop admin", Registry: reg, Projections: runner, Pool: pool})
//		os.Exit(c.Run(ctx, os.Args[2:]))
//	}
//
//	$ shop admin projection rebuild order_summary
//	rebuild order_summary  50% |███████████████               | (1500/3000, 1251 events/s) [1s:1s]
//	…
//	rebuilt order_summary: 3000 events in 3.1s (965 events/s)
//	$ shop admin schema check
//	Registry: consistent.
//	Events: 3000 checked, 0 do not decode
//
// The progress bar (on stderr) shows the share done, the count, the rate,
// and the time spent and left.
//
// In a service whose command line is built with cobra, add
// cli.New(cfg).Command() to the tree and map the error its execution
// returns with ExitCode.
//
// With Projections, `projection reset NAME --to 0` also clears the read
// model (the projection's Reset) in the transaction that moves the
// checkpoint; names the runner does not know are reset as plain
// subscriptions.
package cli

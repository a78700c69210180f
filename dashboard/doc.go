// Package dashboard is Strata's web dashboard: an http.Handler that shows
// an event store to the people who operate it, and the server behind
// `strata ui`.
//
//	srv := dashboard.New(store, &dashboard.Config{Registry: reg})
//	go srv.Run(ctx) // samples the lag for the charts
//	mux.Handle("/strata/", http.StripPrefix("/strata", srv)) // with Config.Prefix "/strata/"
//
// # Pages
//
//   - Overview: every subscription (projections, relays, Pub/Sub groups,
//     anything else that reads the log) with its partitions, state,
//     owners, lag in events and in time, handled rate and dead letters, and
//     a chart of its lag over the last Config.History; the open
//     transaction that holds gap-safe readers back, when one does; the
//     verdict at a glance. It refreshes itself.
//   - Dead letters: every parked event with its error and attempts; one
//     dead letter with its event, what blocks it and the events of its
//     stream parked behind it; retrying a stream's dead letters (with
//     Config.Actions).
//   - Streams: a stream's events, newest first, a page at a time, each with
//     its metadata, schema version and payload, and with Config.Registry
//     the upcast view (the payload as the application decodes it).
//   - Events: the newest events of the log, of some categories or types,
//     followed live (server-sent events), newest on top.
//   - Trace: the events of one correlation ID as a causal tree and a
//     timeline, drawn, and as `strata trace` prints it.
//
// # What it costs the database
//
// The overview's figures come from one sample: the log's head
// (eventstore.Store.Head), the horizon (Horizon) and every subscription
// partition's row with its lag counted over at most Config.MaxLag entries
// of the log after its checkpoint (ProbeSubscription, an index range scan
// of events_log_idx). None of these reads more of the log as it grows: a
// sample costs the same with a thousand events or ten million. A partition
// further behind than MaxLag shows an estimate ("≈"): the entries between
// its checkpoint and the head, times the share of the examined entries its
// filter and partition select. Run samples every Config.SampleInterval
// and keeps Config.History of samples in memory for the charts; while it
// runs, the overview renders its last sample and sends no query.
//
// The other pages read what they show: a page of a stream, the newest
// events of the log (browsing a rare category reads back until it has a
// page), one correlation ID (an index), the dead letters. The live tail
// reads the log from where the page left it, as a gap-safe reader does,
// a page every 300ms.
//
// # Security
//
// Every value from the database — stream IDs, types, payloads, metadata,
// errors, subscription and owner names — is attacker-controlled: pages
// are html/template with no value marked safe; names holding invisible or
// reordering characters are shown quoted; the live tail builds its rows
// with textContent. A strict Content-Security-Policy (scripts and styles
// from the dashboard's own files only, no inline script, no framing)
// stops what escaping might miss. No connection string, password or
// session query text is ever sent.
//
// The dashboard is read-only unless Config.Actions is set. Each action is
// asked for on a confirmation page and done by a POST that carries the
// Server's CSRF token, is refused from another origin
// (http.CrossOriginProtection), and is logged with who asked. Config's
// Username and Password (HTTP basic) or BearerToken require
// authentication for every request; without them, serve it on loopback
// only (as `strata ui` does unless told otherwise), and use TLS in front
// of it beyond.
//
// # Front end
//
// Plain HTML from the server, SVG drawn on the server (the lag charts, the
// trace), one stylesheet and one small script in plain JavaScript (the
// overview's refresh and the live tail), all embedded in the binary: no
// Node.js, no build step, no front-end library to keep up to date, and a
// Content-Security-Policy that allows nothing else.
package dashboard

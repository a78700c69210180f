package pgtest

import "go.uber.org/goleak"

// LeakOptions are the goleak options of the module's leak checks: the
// goroutines that may outlive a test without being a leak. There is one:
// pgconn's asyncClose, which pgx starts when a connection is lost or closed
// while busy, to send Terminate and close the socket, bounded by its own
// deadline (15 s). Tests that cut or terminate connections leave it
// running for a moment after they end.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"),
	}
}

// Package failure is the module's one classification of a worker's
// errors into transient and permanent.
//
// Contract: an error is transient when it says nothing about the input
// being handled (a database or broker that is down, a lost connection):
// the input is retried with backoff for as long as it takes. It is
// permanent when retrying the same input cannot cure it (a payload that
// does not decode, a message the broker refuses for its size): the input
// is tried eventstore.SubscriptionConfig.MaxAttempts times and then
// handled by the subscription's FailurePolicy. Rules.Transient is what
// every package hands to eventstore.SubscriptionConfig.Transient, and it
// decides in this order:
//
//  1. an error marked with Permanent is permanent;
//  2. an error Rules.IsPermanent reports is permanent;
//  3. an error from losing or not reaching Postgres (Connection) is
//     transient;
//  4. an error Rules.IsTransient reports is transient;
//  5. any other error is what Rules.TransientByDefault says.
package failure

import (
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrPermanent matches (errors.Is) every error marked with Permanent.
var ErrPermanent = errors.New("permanent failure")

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() []error      { return []error{e.err, ErrPermanent} }
func (e permanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as permanent: errors.Is(err, ErrPermanent) holds, and
// errors.Is and errors.As still see err. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// Rules are a package's part of the classification: its users' hooks and
// what an error no rule matches is.
type Rules struct {
	// IsPermanent reports errors that are permanent (a user's hook, such as
	// outbox.Config.Permanent). Nil matches none.
	IsPermanent func(error) bool
	// IsTransient reports errors that are transient (a user's hook, such as
	// projection.Projection.Transient). Nil matches none.
	IsTransient func(error) bool
	// TransientByDefault says whether an error no rule matches is
	// transient: true where failures are mostly outages (a relay to a
	// broker), false where they are mostly the input's fault (a read
	// model's handler).
	TransientByDefault bool
}

// Transient reports whether err is transient under r, in the order the
// package documentation gives.
func (r Rules) Transient(err error) bool {
	switch {
	case errors.Is(err, ErrPermanent):
		return false
	case r.IsPermanent != nil && r.IsPermanent(err):
		return false
	case Connection(err):
		return true
	case r.IsTransient != nil && r.IsTransient(err):
		return true
	}
	return r.TransientByDefault
}

// Connection reports errors that come from losing or not reaching the
// database rather than from the input: a restarted server, a broken
// connection, a server shutting down.
func Connection(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01-57P03: admin shutdown,
		// crash shutdown, cannot connect now.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connErr) || errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe") ||
		strings.Contains(msg, "connection refused")
}

// Race names the Postgres errors that roll a transaction back because it
// raced another one, and that running the whole transaction again cures.
type Race string

const (
	// NoRace: the error is not a race (or is nil).
	NoRace Race = ""
	// Serialization is SQLSTATE 40001, serialization_failure: a
	// REPEATABLE READ or SERIALIZABLE transaction lost to a concurrent one.
	Serialization Race = "40001"
	// Deadlock is SQLSTATE 40P01, deadlock_detected: the server ended
	// this transaction to break a cycle of lock waits.
	Deadlock Race = "40P01"
)

// RaceOf classifies err (anywhere in its chain) as a race or NoRace. It is
// the module's one reading of these SQLSTATEs.
func RaceOf(err error) Race {
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) {
		return NoRace
	}
	switch Race(pgErr.Code) {
	case Serialization, Deadlock:
		return Race(pgErr.Code)
	}
	return NoRace
}

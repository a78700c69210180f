package eventstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Sealer turns what an event must not store in clear (its personal
// fields) into ciphertext before an append writes anything: Append and
// AppendTx call it after the Validator, with the events' IDs already
// fixed. Package shred's *Shredder is one.
//
// Seal returns the data to store for each event, in order (the events'
// own Data when there is nothing to seal). q is what the append runs on:
// the caller's transaction for AppendTx (so that keys made for it commit
// with it, and no second connection is taken while it is held), the pool
// for Append. An error matching ErrInvalidEvent (a personal field without
// a subject, say) is bad input; any error means nothing is written.
type Sealer interface {
	Seal(ctx context.Context, q Querier, streamID string, events []NewEvent) ([][]byte, error)
}

// Querier is the part of a pool, a connection or a transaction that an
// Opener reads keys with.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Opener turns the sealed fields of events read from the log back into
// plaintext, or into their documented erased value when the key is gone.
// Every read of the store that returns events (ReadStream, ReadAll,
// ReadLog, ReadLast, ReadCorrelated, ReadByPrincipal) and every
// subscription (unless SubscriptionConfig.Sealed) passes its events
// through it. Package shred's *Shredder is one.
//
// Open returns copies of events with their Data opened; it never changes
// the events passed in. With lock, q is the transaction a subscription's
// handler writes in, and the keys used stay locked (FOR SHARE) until it
// ends, so that forgetting a subject waits for the handler's writes and
// is seen by the next batch: no plaintext is written after a forget.
type Opener interface {
	Open(ctx context.Context, q Querier, events []Event, lock bool) ([]Event, error)
}

// Redactor is an Opener that can take out of a text the plaintext it put
// into events: Redact returns text without the values that opening
// stored gave opened. A subscription whose Opener is one records a
// failing handler's error (its last error, a dead letter, its logs) so
// redacted: that text is written after the batch's transaction ended,
// where the key lock cannot order it before a forget. Package shred's
// *Shredder is one.
type Redactor interface {
	Redact(stored, opened []Event, text string) string
}

// redactedError is a handler's error whose text is redacted (see
// Redactor); errors.Is and errors.As still see the error itself.
type redactedError struct {
	err  error
	text string
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// RedactError wraps err, returned by code given opened (the events
// stored, opened by OpenTx), so that its text holds none of the personal
// values opening put in (see Redactor): for a component that records the
// error's text, as the workflow inbox does. errors.Is and errors.As see
// err. Without an Opener that is a Redactor it returns err.
func (s *Store) RedactError(stored, opened []Event, err error) error {
	r, ok := s.cfg.Opener.(Redactor)
	if !ok || err == nil {
		return err
	}
	text := err.Error()
	if out := r.Redact(stored, opened, text); out != text {
		return &redactedError{err: err, text: out}
	}
	return err
}

// seal runs the Sealer over a prepared append.
func (s *Store) seal(ctx context.Context, q querier, streamID string, events []NewEvent, a *appendArgs) error {
	if s.cfg.Sealer == nil {
		return nil
	}
	evs := make([]NewEvent, len(a.ids))
	for i := range evs {
		evs[i] = events[i]
		evs[i].ID, evs[i].SchemaVersion, evs[i].Data = a.ids[i], int(a.versions[i]), a.data[i]
	}
	data, err := s.cfg.Sealer.Seal(ctx, q, streamID, evs)
	if err != nil {
		return fmt.Errorf("eventstore: append to %q: %w", streamID, err)
	}
	if len(data) != len(evs) {
		return fmt.Errorf("eventstore: append to %q: the sealer returned %d payloads for %d events", streamID, len(data), len(evs))
	}
	for i, d := range data {
		if size := len(d) + len(a.meta[i]) + len(a.corr[i]) + len(a.caus[i]); size > s.cfg.MaxEventSize {
			return &InvalidEventError{StreamID: streamID, Index: i, Field: "size",
				Reason: fmt.Sprintf("sealed event is %d bytes, more than the limit of %d", size, s.cfg.MaxEventSize)}
		}
		a.data[i] = d
	}
	return nil
}

// open runs the Opener over events read by one of the store's reads,
// looking keys up on the pool.
func (s *Store) open(ctx context.Context, events []Event) ([]Event, error) {
	return s.openOn(ctx, s.pool, events)
}

// openOn is open looking keys up on q: a read in the caller's
// transaction (ReadStreamTx) opens in it, so that it never waits for a
// second connection of the pool while holding one.
func (s *Store) openOn(ctx context.Context, q querier, events []Event) ([]Event, error) {
	if s.cfg.Opener == nil || len(events) == 0 {
		return events, nil
	}
	return s.cfg.Opener.Open(ctx, q, events, false)
}

// openPage is open for a page read: s.openPage(ctx)(read(…)).
func (s *Store) openPage(ctx context.Context) func(Page, error) (Page, error) {
	return func(page Page, err error) (Page, error) {
		if err != nil {
			return page, err
		}
		page.Events, err = s.open(ctx, page.Events)
		return page, err
	}
}

// OpenTx opens events that a component kept as stored (a workflow's
// inbox, say) as a subscription opens its batch: in tx, their keys locked
// (FOR SHARE) until tx ends. Without an Opener it returns events as they
// are.
func (s *Store) OpenTx(ctx context.Context, tx pgx.Tx, events []Event) ([]Event, error) {
	if s.cfg.Opener == nil || len(events) == 0 {
		return events, nil
	}
	opened, err := s.cfg.Opener.Open(ctx, tx, events, true)
	if err != nil {
		return nil, fmt.Errorf("eventstore: open events: %w", err)
	}
	return opened, nil
}

// opening wraps h, the subscription's handler, so that it is handed the
// events opened (see Config.Opener): in tx, with their keys locked until
// it ends, or, with HandleOutsideTx (a nil tx), on the pool without a
// lock. The events passed in are never changed, so a retry opens them
// again. h's error comes back redacted (see Redactor). It wraps the
// handler itself (and its panic recovery), under the breaker: batches,
// single events and retried dead letters are opened alike, and the
// breaker records the redacted text. With SubscriptionConfig.Sealed, or
// without an Opener, it is h.
func (sub *Subscription) opening(h Handler) Handler {
	o := sub.store.cfg.Opener
	if o == nil || sub.cfg.Sealed {
		return h
	}
	return func(ctx context.Context, tx pgx.Tx, events []Event) error {
		var opened []Event
		var err error
		if tx == nil {
			opened, err = o.Open(ctx, sub.store.pool, events, false)
		} else {
			opened, err = o.Open(ctx, tx, events, true)
		}
		if err != nil {
			return fmt.Errorf("open events: %w", err)
		}
		return sub.store.RedactError(events, opened, h(ctx, tx, opened))
	}
}

package pubsub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtx"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/sqltext"
	"github.com/strata-go/strata/internal/storeview"
)

// Publishing to several streams at once.
//
// The messages of one Publish call that carry no tx are written all or
// nothing. Going to one stream (and at most MaxBatch of them) they are one
// append, which the store makes atomic and resolves itself when its
// connection is lost. Going to several streams (PartitionKey), or more
// than MaxBatch, they are written in one transaction of the store's pool,
// each stream's events by AppendTx under a savepoint (so that a message
// already stored is skipped, as in any Publish).
//
// When the answer to that transaction's COMMIT is lost, it committed or it
// did not, and the server process behind the lost connection may still be
// deciding. As eventstore.Store.Append does for an append, Publish then
// ends that process (see eventstore's resolve.go for why that is both
// allowed and safe) and, once it is gone, looks the events up on another
// connection: all of them stored means the transaction committed (or the
// messages were stored before, which counts as published too); otherwise
// it did not, and Publish returns an error. The resolution goes on after
// the caller's context ended (a deadline is one way a connection is lost),
// for at most resolveTimeout; if it cannot finish by then, Publish returns
// an *eventstore.AmbiguousError.
//
// The streams are written in the order of their IDs, so that two such
// transactions never wait for each other's stream in a cycle. A stream
// that a transaction with a later ID wrote and committed meanwhile makes
// AppendTx refuse (eventstore.ErrOutOfOrder): as Append does, the whole
// transaction then runs again (it wrote nothing), as it does after a
// deadlock or a serialization failure, at most maxTogetherAttempts times.
//
// Any error from COMMIT other than one the server answered is taken as a
// lost answer: pgx reports a connection lost after COMMIT was sent as
// "conn closed", the error it also gives for a connection closed before
// anything was sent (and that pgconn.SafeToRetry calls safe).

// resolveTimeout bounds the resolution of a lost COMMIT, as the store's
// Config.ResolveTimeout does for an append.
const resolveTimeout = 5 * time.Second

// countStoredSQL counts which of the event IDs $1 are stored (events'
// unique index on event_id).
const countStoredSQL = `SELECT count(*) FROM {schema}.events WHERE event_id = ANY($1)`

// maxTogetherAttempts bounds the runs of a transaction refused for the
// log's order, a deadlock or a serialization failure.
const maxTogetherAttempts = 20

// streamEvents are the events of one Publish call for one stream.
type streamEvents struct {
	stream string
	events []eventstore.NewEvent
}

// appendTogether writes the events of streams in one transaction.
func (p *Publisher) appendTogether(ctx context.Context, streams []streamEvents) error {
	ctx, stop := p.withClosing(ctx)
	defer stop()
	streams = slices.Clone(streams)
	slices.SortFunc(streams, func(a, b streamEvents) int { return strings.Compare(a.stream, b.stream) })
	pace := retry.Backoff(time.Millisecond, 100*time.Millisecond)
	var err error
	for attempt := 1; ; attempt++ {
		var pid uint32
		var lostCommit bool
		pid, lostCommit, err = p.writeTogether(ctx, streams)
		if lostCommit {
			err = p.resolveTogether(ctx, pid, streams, err)
			break
		}
		if !runAgain(err) || attempt == maxTogetherAttempts || !retry.Sleep(ctx, pace.NextBackOff()) {
			break
		}
	}
	if err != nil && p.closing.Err() != nil {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// runAgain reports whether err, from a transaction that wrote nothing,
// asks for the transaction to run again.
func runAgain(err error) bool {
	if errors.Is(err, eventstore.ErrOutOfOrder) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// writeTogether runs the transaction. lostCommit reports that COMMIT failed
// without an answer from the server: the outcome is unknown, and pid is
// the server process that knows it.
func (p *Publisher) writeTogether(ctx context.Context, streams []streamEvents) (pid uint32, lostCommit bool, err error) {
	// pgtx ends the server process of a connection lost on the way.
	tx, err := pgtx.Begin(ctx, p.store.Pool(), pgtx.Options{})
	if err != nil {
		return 0, false, err
	}
	for _, s := range streams {
		for chunk := range slices.Chunk(s.events, p.cfg.MaxBatch) {
			if err := p.appendInTx(ctx, tx, s.stream, chunk); err != nil {
				_ = tx.Rollback(ctx)
				return tx.PID(), false, fmt.Errorf("stream %q: %w", s.stream, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return tx.PID(), true, err
		}
		// Severity is translated by the server's lc_messages; its
		// untranslated form says whether the session ended (a COMMIT that
		// waited for synchronous replication and was ended may have
		// committed).
		sev := pgErr.SeverityUnlocalized
		if sev == "" {
			sev = pgErr.Severity
		}
		return tx.PID(), sev == "FATAL" || sev == "PANIC", err
	}
	return tx.PID(), false, nil
}

// resolveTogether learns the outcome of a transaction whose COMMIT failed
// with cause and no answer, on the connection to server process pid: nil
// if its events are stored, an error saying they are not, or an
// *eventstore.AmbiguousError.
func (p *Publisher) resolveTogether(ctx context.Context, pid uint32, streams []streamEvents, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	// Each ID once: a message repeated in the call is stored once.
	var ids []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, s := range streams {
		for _, e := range s.events {
			if !seen[e.ID] {
				seen[e.ID] = true
				ids = append(ids, e.ID)
			}
		}
	}
	log := storeview.Of(p.store).Logger
	pool := p.store.Pool()
	pace := retry.Backoff(time.Millisecond, 50*time.Millisecond)
	var last error
	for {
		// Once the process is gone, its transaction is over: the look-up's
		// snapshot sees it committed or not at all.
		if err := pgtx.End(ctx, pool, pid, resolveTimeout); err != nil {
			last = err
		} else {
			var n int
			err := pool.QueryRow(ctx, sqltext.Expander(storeview.Of(p.store).Schema).Replace(countStoredSQL), ids).Scan(&n)
			if err == nil {
				stored := n == len(ids)
				log.InfoContext(ctx, "pubsub: publish outcome resolved after a lost connection", "stream", streams[0].stream, "stored", stored, "error", cause)
				if stored {
					return nil
				}
				return fmt.Errorf("connection lost while committing; the messages are not stored (checked on another connection): %w", cause)
			}
			last = fmt.Errorf("look up event %s: %w", ids[0], err)
		}
		select {
		case <-ctx.Done():
			log.WarnContext(ctx, "pubsub: publish outcome unknown after a lost connection", "stream", streams[0].stream, "error", cause, "resolve_error", last)
			return &eventstore.AmbiguousError{StreamID: streams[0].stream, EventIDs: ids, Err: cause, Resolve: fmt.Errorf("%w (gave up after %s)", last, resolveTimeout)}
		case <-time.After(pace.NextBackOff()):
		}
	}
}

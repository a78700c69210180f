package eventstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"

	"github.com/jackc/pgx/v5"
)

// streamVersionSQL reads a stream's version. Index: streams_pkey.
const streamVersionSQL = `SELECT version FROM {schema}.streams WHERE stream_id = $1`

// readStreamSQL reads a stream from a version.
// Index: events_stream_version_key (stream_id, version).
const readStreamSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE stream_id = $1 AND version >= $2 ORDER BY version`

// readLogSQL is the gap-safe read of the log. Rows are ordered by
// (transaction_id, position) and only rows with transaction_id below the
// xmin of this statement's own snapshot are returned. Every transaction
// below xmin has ended, and any transaction that writes later gets an ID
// at or above xmin, so nothing can ever appear before the last row
// returned. No timeouts, no locks.
// Index: events_log_idx (transaction_id, position), a range scan from the
// checkpoint.
const readLogSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE (transaction_id, position) > ($1, $2)
	  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	ORDER BY transaction_id, position LIMIT $3`

// readLogFilteredSQL is readLogSQL keeping the events a Filter selects
// ($5 categories, $6 types: NULL keeps all; $8 the partition kept when
// there are $7 > 1, and $7 is at least 1), up to the end of the window of $4 log entries that
// logWindowSQL reads. Index: events_log_idx; the filter applies to the
// rows the range scan meets.
const readLogFilteredSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE (transaction_id, position) > ($1, $2)
	  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	  AND ($5::text[] IS NULL OR category = ANY($5::text[]))
	  AND ($6::text[] IS NULL OR event_type = ANY($6::text[]))
	  AND ($7::bigint <= 1 OR ((hashtext(stream_id)::bigint & 2147483647) % $7::bigint) = $8::bigint)
	  AND (transaction_id, position) <= (SELECT wtx, wpos FROM (
		SELECT transaction_id AS wtx, position AS wpos FROM (
			SELECT transaction_id, position FROM {schema}.events
			WHERE (transaction_id, position) > ($1, $2)
			  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
			ORDER BY transaction_id, position LIMIT $4) w
		ORDER BY transaction_id DESC, position DESC LIMIT 1) win)
	ORDER BY transaction_id, position LIMIT $3`

// logWindowSQL reads the last entry of the next window of $3 entries of
// the readable log, and how many entries the window holds.
// Index: events_log_idx.
const logWindowSQL = `SELECT transaction_id AS wtx, position AS wpos, count(*) OVER () AS scanned FROM (
		SELECT transaction_id, position FROM {schema}.events
		WHERE (transaction_id, position) > ($1, $2)
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
		ORDER BY transaction_id, position LIMIT $3) w
	ORDER BY transaction_id DESC, position DESC LIMIT 1`

// StreamVersion returns the current version of a stream, or
// ErrStreamNotFound.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := checkStreamArg("version of", streamID); err != nil {
		return 0, err
	}
	return s.streamVersion(ctx, s.pool, streamID)
}

func (s *Store) streamVersion(ctx context.Context, q querier, streamID string) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, s.sql.streamVersion, streamID).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrStreamNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: version of %q: %w", streamID, err)
	}
	return v, nil
}

// ReadStream yields a stream's events in version order, starting at
// fromVersion (0 or 1: from the start). Rows are streamed from the server
// as the loop consumes them; breaking out of the loop releases the
// connection. A stream without events yields ErrStreamNotFound once.
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64) iter.Seq2[Event, error] {
	return s.readStream(ctx, s.pool, streamID, fromVersion)
}

// ReadStreamTx is ReadStream inside the caller's transaction.
func (s *Store) ReadStreamTx(ctx context.Context, tx pgx.Tx, streamID string, fromVersion int64) iter.Seq2[Event, error] {
	return s.readStream(ctx, tx, streamID, fromVersion)
}

func (s *Store) readStream(ctx context.Context, q querier, streamID string, fromVersion int64) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if err := checkStreamArg("read", streamID); err != nil {
			yield(Event{}, err)
			return
		}
		n := 0
		var err error
		if s.cfg.Opener != nil {
			n, err = s.readStreamOpened(ctx, q, streamID, fromVersion, yield)
		} else {
			var rows pgx.Rows
			rows, err = q.Query(ctx, s.sql.readStream, streamID, fromVersion)
			if err == nil {
				err = scanEvents(rows, func(e Event) bool { n++; return yield(e, nil) })
			}
		}
		if n < 0 {
			return // the loop stopped
		}
		if err != nil {
			yield(Event{}, fmt.Errorf("eventstore: read %q: %w", streamID, err))
			return
		}
		if n > 0 {
			return
		}
		if fromVersion > 1 {
			// The stream may exist with fewer events than fromVersion.
			if _, err := s.streamVersion(ctx, q, streamID); !errors.Is(err, ErrStreamNotFound) {
				if err != nil {
					yield(Event{}, err)
				}
				return
			}
		}
		yield(Event{}, fmt.Errorf("eventstore: read %q: %w", streamID, ErrStreamNotFound))
	}
}

// readStreamPage is readStreamSQL a page at a time, for a store with an
// Opener: a page's keys are looked up together once its rows are read.
// Index: events_stream_version_key.
const readStreamPageSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`

// streamPage is how many events readStreamOpened reads and opens at once.
const streamPage = 500

// readStreamOpened reads a stream a page at a time, opening each page
// before yielding it. It returns the number of events yielded, or -1 when
// yield stopped the loop.
func (s *Store) readStreamOpened(ctx context.Context, q querier, streamID string, from int64, yield func(Event, error) bool) (int, error) {
	n := 0
	for {
		var page []Event
		rows, err := q.Query(ctx, s.sql.readStreamPage, streamID, from, streamPage)
		if err == nil {
			err = scanEvents(rows, func(e Event) bool { page = append(page, e); return true })
		}
		if err == nil {
			page, err = s.openOn(ctx, q, page)
		}
		if err != nil {
			return n, err
		}
		for _, e := range page {
			n++
			if !yield(e, nil) {
				return -1, nil
			}
		}
		if len(page) < streamPage {
			return n, nil
		}
		from = page[len(page)-1].Version + 1
	}
}

// Filter narrows a read of the global log. The zero Filter reads everything.
type Filter struct {
	// Categories keeps only events of streams in these categories (the part
	// of the stream ID before the first '-').
	Categories []string
	// Types keeps only events of these types.
	Types []string
	// Partitions, when above 1, splits the log by a hash of the stream ID
	// into that many partitions, and Partition (0 ≤ Partition < Partitions)
	// keeps one of them. A stream's events are all in one partition, so a
	// reader of one partition still sees each stream in order.
	Partitions int
	// Partition is the partition kept when Partitions > 1.
	Partition int
}

// ReadAll returns up to limit events of the global log after the position
// after (the zero Position: from the start), in log order.
//
// It returns only events that no open transaction can precede: an append
// whose transaction is still open holds back the events of every
// transaction that started after it, until it commits or rolls back. So a
// reader that passes each page's Next to the following call sees every
// committed event exactly once, in order, and never a rolled-back one.
func (s *Store) ReadAll(ctx context.Context, after Position, limit int) (Page, error) {
	return s.ReadAllFiltered(ctx, after, limit, Filter{})
}

// ReadAllFiltered is ReadAll keeping only the events f selects.
func (s *Store) ReadAllFiltered(ctx context.Context, after Position, limit int, f Filter) (Page, error) {
	return s.openPage(ctx)(s.readAllFiltered(ctx, after, limit, f))
}

// readAllFiltered is ReadAllFiltered without the Opener: subscriptions
// open their events inside the handler's transaction.
func (s *Store) readAllFiltered(ctx context.Context, after Position, limit int, f Filter) (Page, error) {
	if err := firstError(checkLimit("read log", limit), checkPosition("read log", after), f.check()); err != nil {
		return Page{}, err
	}
	var page Page
	var err error
	switch {
	case len(f.Categories) == 0 && len(f.Types) == 0 && f.Partitions <= 1:
		page, err = s.readPage(ctx, after, limit)
	case scanFilteredReads:
		page, err = s.readWindow(ctx, after, limit, f)
	default:
		page, err = s.readKeys(ctx, after, limit, f)
	}
	if err != nil {
		return Page{}, fmt.Errorf("eventstore: read log after %s: %w", after, err)
	}
	return page, nil
}

// readPage is the unfiltered read.
func (s *Store) readPage(ctx context.Context, after Position, limit int) (Page, error) {
	rows, err := s.pool.Query(ctx, s.sql.readLog, int64(after.TxID), after.Seq, limit)
	if err != nil {
		return Page{}, err
	}
	page, err := scanPage(rows, after, limit)
	page.AtEnd = len(page.Events) < limit
	return page, err
}

// filterWindow is how many log entries a filtered read scans, at most, per
// event it may return.
const filterWindow = 8

// readWindow is the filtered read as it was before the key indexes
// (readkeys.go), kept for the benchmark that compares the two. A plain
// filtered query would, on every
// call, scan again all the entries the filter skipped after the last match:
// a reader of a rare category would rescan most of the log on each poll.
// So the scan is bounded to a window of limit*filterWindow entries of the
// log, and Next moves to the end of the window when it holds fewer than
// limit matches. Both statements run in one REPEATABLE READ snapshot, sent
// in one round trip, so the window's end and the matches agree.
func (s *Store) readWindow(ctx context.Context, after Position, limit int, f Filter) (Page, error) {
	window := limit * filterWindow
	if limit > math.MaxInt/filterWindow {
		window = math.MaxInt
	}
	batch := &pgx.Batch{}
	batch.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	batch.Queue(s.sql.readLogFiltered, int64(after.TxID), after.Seq, limit, window,
		nilIfEmpty(f.Categories), nilIfEmpty(f.Types), max(f.Partitions, 1), f.Partition)
	batch.Queue(s.sql.logWindow, int64(after.TxID), after.Seq, window)
	batch.Queue(`COMMIT`)
	br := s.pool.SendBatch(ctx, batch)
	page, err := func() (Page, error) {
		if _, err := br.Exec(); err != nil {
			return Page{}, err
		}
		rows, err := br.Query()
		if err != nil {
			return Page{}, err
		}
		page, err := scanPage(rows, after, limit)
		if err != nil {
			return Page{}, err
		}
		var wtx, wpos, scanned int64
		switch err := br.QueryRow().Scan(&wtx, &wpos, &scanned); {
		case errors.Is(err, pgx.ErrNoRows):
			page.AtEnd = true // nothing readable after "after"
		case err != nil:
			return Page{}, err
		case len(page.Events) < limit:
			// Every match up to the window's end is in the page.
			page.Next = Position{TxID: uint64(wtx), Seq: wpos}
			page.AtEnd = scanned < int64(window)
		}
		_, err = br.Exec()
		return page, err
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return page, err
}

// nilIfEmpty sends an empty list as NULL: no condition.
func nilIfEmpty(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	return list
}

// scanPage reads a result set of events into a page after "after".
func scanPage(rows pgx.Rows, after Position, limit int) (Page, error) {
	page := Page{Events: make([]Event, 0, min(limit, 1024)), Next: after}
	if err := scanEvents(rows, func(e Event) bool { page.Events = append(page.Events, e); return true }); err != nil {
		return Page{}, err
	}
	if n := len(page.Events); n > 0 {
		page.Next = page.Events[n-1].Position
	}
	return page, nil
}

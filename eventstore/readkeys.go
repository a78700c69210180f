package eventstore

import (
	"context"
	"errors"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Filtered reads that cost what they return (migration 0065). A filtered
// read walks, in log order, an index of the events it may select: the
// category index (events_category_log_idx) for a read of categories, the
// log index (events_log_idx) otherwise, both carrying the stored
// partition_key. Which walk, by the filter:
//
//   - one category, no partitions, no types: a plain range scan of the
//     category index (readCategorySQL), each entry an event returned;
//   - a few partitions (up to directPartitions), no category, no types: a
//     plain range scan of the log index keeping the partition's rows
//     (readPartitionSQL). It visits the rows of the other partitions too,
//     but they sit on the same heap pages as the partition's own (the heap
//     is in log order, about 10 events a page), which costs less than
//     looking each event up by position;
//   - anything else: an index-only walk of the keys (readKeysSQL,
//     readCategoryKeysSQL) that keeps a partition's keys from the index
//     entries alone, up to a window of keys, and looks up only the keys kept
//     by position, where the event types are filtered.
//
// Measured on a log of 1,000,000 events (pages of 500, server time): a
// partition of 4 costs 0.7ms a page by the plain scan against 1.4ms by
// keys; of 8, 1.5 against 1.9; of 16, 2.7 against 2.5; of 32, 5.7 against
// 3.8.
//
// The horizon is the whole log's: entries are walked only below the xmin
// of the read's snapshot, as readLogSQL does, and every transaction below
// it has ended, so no entry can appear later before one already walked.
// When a walk comes back short, nothing this filter selects is left below
// the horizon, and Next moves to the readable head of the whole log (the
// last entry below a horizon no later than the walk's: see readKeys): the
// events of other categories and partitions up to there are never walked
// again, and nothing can appear before the head later.

// The planner cannot estimate how many rows a partition's condition (a
// modulo's equality) keeps: it guesses 0.5%, and on a log of less than
// about 100,000 events it would then rather scan the whole table (or a
// bitmap of the range) and sort it for every page than walk an index in
// log order. Wrapped in coalesce (a no-op: neither side is ever NULL), the
// condition is an opaque boolean the planner guesses at 50%, nearer the
// 1/partitions it keeps, and the walk in log order wins.
// TestFilteredReadPlansWalkTheKeys holds every statement to its plan.

// directPartitions is the most partitions whose reads scan the log index
// with its rows (readPartitionSQL) rather than walk its keys.
const directPartitions = 8

// readCategorySQL is the read of one category $4: its events after
// ($1, $2), up to $3. Index: events_category_log_idx, a range scan from
// the checkpoint.
const readCategorySQL = `SELECT {event_columns} FROM {schema}.events
	WHERE category = $4
	  AND (transaction_id, position) > ($1, $2)
	  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	ORDER BY transaction_id, position LIMIT $3`

// readPartitionSQL is the read of partition $5 of $4: its events after
// ($1, $2), up to $3. Index: events_log_idx, a range scan from the
// checkpoint, the partition kept by the rows' stored partition_key.
const readPartitionSQL = `SELECT {event_columns} FROM {schema}.events
	WHERE (transaction_id, position) > ($1, $2)
	  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	  AND coalesce(partition_key % $4::bigint = $5::bigint, false)
	ORDER BY transaction_id, position LIMIT $3`

// readKeysSQL is the filtered read of a log without a category filter:
// the first $4 keys of partition $7 of $6 (every key when $6 is 1) after
// ($1, $2), of which the events of types $5 (NULL: all), up to $3.
// Index: events_log_idx (transaction_id, position) INCLUDE (partition_key),
// an index-only range scan from the checkpoint that applies the partition
// to the index entries; then events_pkey per key kept, in a LATERAL
// subquery whose LIMIT keeps it a nested loop in the walk's order (as a
// join, the planner may hash the whole table instead).
const readKeysSQL = `SELECT e.* FROM (
		SELECT transaction_id AS ktx, position AS kpos FROM {schema}.events
		WHERE (transaction_id, position) > ($1, $2)
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
		  AND coalesce($6::bigint <= 1 OR partition_key % $6::bigint = $7::bigint, false)
		ORDER BY transaction_id, position LIMIT $4) k
	CROSS JOIN LATERAL (SELECT {event_columns} FROM {schema}.events
		WHERE position = k.kpos AND ($5::text[] IS NULL OR event_type = ANY($5::text[])) LIMIT 1) e
	ORDER BY k.ktx, k.kpos LIMIT $3`

// readCategoryKeysSQL is readKeysSQL over the events of categories $8
// (distinct, not empty): the first $4 keys of each category, merged in
// log order, the first $4 of those kept.
// Index: events_category_log_idx (category, transaction_id, position)
// INCLUDE (partition_key), an index-only range scan per category from the
// checkpoint; then events_pkey per key kept.
const readCategoryKeysSQL = `SELECT e.* FROM (
		SELECT c.ktx, c.kpos FROM unnest($8::text[]) AS cat(name)
		CROSS JOIN LATERAL (
			SELECT transaction_id AS ktx, position AS kpos FROM {schema}.events
			WHERE category = cat.name
			  AND (transaction_id, position) > ($1, $2)
			  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
			  AND coalesce($6::bigint <= 1 OR partition_key % $6::bigint = $7::bigint, false)
			ORDER BY transaction_id, position LIMIT $4) c
		ORDER BY c.ktx, c.kpos LIMIT $4) k
	CROSS JOIN LATERAL (SELECT {event_columns} FROM {schema}.events
		WHERE position = k.kpos AND ($5::text[] IS NULL OR event_type = ANY($5::text[])) LIMIT 1) e
	ORDER BY k.ktx, k.kpos LIMIT $3`

// logHeadSQL reads the readable head of the log: its last entry below the
// horizon. Index: events_log_idx, read backwards once.
const logHeadSQL = `SELECT transaction_id, position FROM {schema}.events
	WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
	ORDER BY transaction_id DESC, position DESC LIMIT 1`

// keysWindowSQL reads, of the window of $3 keys readKeysSQL walks (of
// partition $5 of $4 after ($1, $2)), the last key and how many the window
// holds.
// Index: events_log_idx, index-only.
const keysWindowSQL = `SELECT ktx, kpos, count(*) OVER () FROM (
		SELECT transaction_id AS ktx, position AS kpos FROM {schema}.events
		WHERE (transaction_id, position) > ($1, $2)
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
		  AND coalesce($4::bigint <= 1 OR partition_key % $4::bigint = $5::bigint, false)
		ORDER BY transaction_id, position LIMIT $3) k
	ORDER BY ktx DESC, kpos DESC LIMIT 1`

// categoryKeysWindowSQL is keysWindowSQL for readCategoryKeysSQL's walk
// of categories $6.
// Index: events_category_log_idx, index-only.
const categoryKeysWindowSQL = `SELECT ktx, kpos, count(*) OVER () FROM (
		SELECT c.ktx, c.kpos FROM unnest($6::text[]) AS cat(name)
		CROSS JOIN LATERAL (
			SELECT transaction_id AS ktx, position AS kpos FROM {schema}.events
			WHERE category = cat.name
			  AND (transaction_id, position) > ($1, $2)
			  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
			  AND coalesce($4::bigint <= 1 OR partition_key % $4::bigint = $5::bigint, false)
			ORDER BY transaction_id, position LIMIT $3) c
		ORDER BY c.ktx, c.kpos LIMIT $3) k
	ORDER BY ktx DESC, kpos DESC LIMIT 1`

// keyQueries are the statements of the filtered reads, expanded.
type keyQueries struct {
	category, partition, keys, categoryKeys, head, window, categoryWindow string
}

func buildKeyQueries(r interface{ Replace(string) string }) keyQueries {
	return keyQueries{
		category:       r.Replace(readCategorySQL),
		partition:      r.Replace(readPartitionSQL),
		keys:           r.Replace(readKeysSQL),
		categoryKeys:   r.Replace(readCategoryKeysSQL),
		head:           r.Replace(logHeadSQL),
		window:         r.Replace(keysWindowSQL),
		categoryWindow: r.Replace(categoryKeysWindowSQL),
	}
}

// scanFilteredReads makes filtered reads scan the log in windows
// (readWindow), as before the key indexes, for the benchmark that compares
// the two. Off: the key walk (readKeys).
var scanFilteredReads = false

// readKeys is the filtered read by an index walk (see the top of this
// file for which). Without a type filter every entry walked is an event
// returned, so the walk is limit entries long and only the head is read
// besides; with one, the walk is a window of limit*filterWindow keys (the
// types are not in the indexes), and its last key and size are read
// besides, so that Next passes over the keys whose events the types did
// not keep.
//
// The statements are sent in one round trip, each with its own snapshot,
// the head's and the window's before the rows': a later snapshot's
// horizon is at or past an earlier one's, and everything below the
// earlier horizon is final. So when the rows come back short, they hold
// every event the filter selects up to the head read before them; and a
// window read before them, if full, is exactly the keys their walk met
// (the first keys after "after" are the same in both snapshots). Next
// never passes an entry the rows' walk did not meet.
func (s *Store) readKeys(ctx context.Context, after Position, limit int, f Filter) (Page, error) {
	typed := len(f.Types) > 0
	window := limit
	if typed {
		window = limit * filterWindow
		if limit > math.MaxInt/filterWindow {
			window = math.MaxInt
		}
	}
	cats := distinct(f.Categories)
	parts := max(f.Partitions, 1)
	batch := &pgx.Batch{}
	batch.Queue(s.sql.keys.head)
	switch {
	case typed:
		rowArgs := []any{int64(after.TxID), after.Seq, limit, window, f.Types, parts, f.Partition}
		windowArgs := []any{int64(after.TxID), after.Seq, window, parts, f.Partition}
		rowsSQL, windowSQL := s.sql.keys.keys, s.sql.keys.window
		if len(cats) > 0 {
			rowArgs, windowArgs = append(rowArgs, cats), append(windowArgs, cats)
			rowsSQL, windowSQL = s.sql.keys.categoryKeys, s.sql.keys.categoryWindow
		}
		batch.Queue(windowSQL, windowArgs...)
		batch.Queue(rowsSQL, rowArgs...)
	case len(cats) == 1 && parts == 1:
		batch.Queue(s.sql.keys.category, int64(after.TxID), after.Seq, limit, cats[0])
	case len(cats) == 0 && parts <= directPartitions:
		batch.Queue(s.sql.keys.partition, int64(after.TxID), after.Seq, limit, parts, f.Partition)
	case len(cats) == 0:
		batch.Queue(s.sql.keys.keys, int64(after.TxID), after.Seq, limit, window, nil, parts, f.Partition)
	default:
		batch.Queue(s.sql.keys.categoryKeys, int64(after.TxID), after.Seq, limit, window, nil, parts, f.Partition, cats)
	}
	br := s.pool.SendBatch(ctx, batch)
	page, err := func() (Page, error) {
		var head, windowEnd *Position
		var htx, hpos int64
		switch err := br.QueryRow().Scan(&htx, &hpos); {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return Page{}, err
		default:
			head = &Position{TxID: uint64(htx), Seq: hpos}
		}
		if typed {
			var wtx, wpos, scanned int64
			switch err := br.QueryRow().Scan(&wtx, &wpos, &scanned); {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return Page{}, err
			case scanned == int64(window):
				windowEnd = &Position{TxID: uint64(wtx), Seq: wpos}
			}
		}
		rows, err := br.Query()
		if err != nil {
			return Page{}, err
		}
		page, err := scanPage(rows, after, limit)
		if err != nil {
			return Page{}, err
		}
		switch {
		case len(page.Events) == limit:
		case windowEnd != nil:
			// The window is full: the events of its keys the types did
			// not keep are passed over.
			if page.Next.Less(*windowEnd) {
				page.Next = *windowEnd
			}
		default:
			// Nothing the filter selects is left up to the head: move to
			// it, never back (an event deleted since the last read may
			// have been the head then).
			if head != nil && page.Next.Less(*head) {
				page.Next = *head
			}
			page.AtEnd = true
		}
		return page, nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return page, err
}

// distinct returns list sorted without repeats (nil when empty): a category
// named twice would be walked twice.
func distinct(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	return slices.Compact(slices.Sorted(slices.Values(list)))
}

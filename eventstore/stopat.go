package eventstore

import (
	"context"
	"time"
)

// Stopping at a position (SubscriptionConfig.StopAt). A partition has
// reached the stop position when its worker has read past it, or when a
// read that began after every transaction up to the stop position had
// ended (the readable horizon had passed it) came back at the end of the
// log: nothing at or before the position is left for the partition. The
// worker checks the horizon before that last read, never after it, so a
// transaction that ends between the two cannot hide an event from the
// check. The coordinator ends Run when every partition has reached it:
// its own through its workers' reports, other processes' through their
// stored checkpoints and lag (a partition is done when its checkpoint is
// at or past the position, or no event its filter selects lies after it).

// stopCheckInterval is the longest between two looks at other processes'
// partitions while Run waits for them to reach StopAt.
const stopCheckInterval = 100 * time.Millisecond

// horizonPastSQL says whether every transaction up to $1 has ended, so
// that a read begun now sees every event at or before a position of
// transaction $1.
const horizonPastSQL = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint > $1`

// stopState is a worker's progress toward StopAt.
type stopState struct {
	at      Position // SubscriptionConfig.StopAt; zero: none
	horizon bool     // the horizon had passed at before the latest read began
}

// reachedStop reports whether the worker has reached the stop position
// (always true without one), after a read that came back at the end of the
// log. again says to read once more before deciding: the horizon has just
// been seen past the position.
func (w *worker) reachedStop(ctx context.Context) (reached, again bool) {
	s := &w.stop
	if s.at.IsZero() || !w.readAt.Less(s.at) || s.horizon {
		return true, false
	}
	var past bool
	if err := w.sub.store.pool.QueryRow(ctx, horizonPastSQL, int64(s.at.TxID)).Scan(&past); err != nil {
		w.warn(ctx, "strata: could not read the log's horizon; trying again at the next poll", err)
		return false, false
	}
	s.horizon = past
	return false, past
}

// passedStop reports whether the worker has read past its stop position,
// with events still to read.
func (w *worker) passedStop() bool {
	return !w.stop.at.IsZero() && !w.readAt.Less(w.stop.at)
}

// othersAtStop marks in done the partitions (owned by other processes or
// by none) whose stored checkpoint shows they have reached StopAt.
func (c *coordinator) othersAtStop(ctx context.Context, done map[int]bool) {
	sub := c.sub
	parts, err := sub.store.subscriptionStatuses(ctx, sub.store.sql.admin.statuses, sub.cfg.Name, int64(1))
	if err != nil {
		if ctx.Err() == nil {
			sub.log.Warn("strata: could not read the partitions' progress; trying again at the next tick", "err", err)
		}
		return
	}
	for _, p := range parts {
		if !done[p.Partition] && (p.Lag == 0 || !p.Checkpoint.Less(sub.cfg.StopAt)) {
			done[p.Partition] = true
		}
	}
}

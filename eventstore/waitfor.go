package eventstore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Read your own writes.
//
// A request that appended events and then reads a read model wants to see
// its own write there. WaitFor waits until a subscription (a projection, a
// relay, a consumer group) has handled a position of the log, woken by the
// commit of the subscription's checkpoint in whichever process it runs:
// a trigger on the subscriptions table (migration 0030) notifies on
// checkpointChannel whenever a checkpoint moves, with the partition and
// its new checkpoint as the payload, and the store's one LISTEN
// connection (wake.go) hands each notification to the waiters of that
// subscription (waitRegistry). Nothing polls: a waiter looks at the
// database when it starts, when a notification says its partition reached
// its target, and when the listener (re)connects (notifications sent while
// it was away are lost).

// ErrSubscriptionNotFound is returned by WaitFor for a subscription that
// was never registered (no process has run it, nor called Register).
var ErrSubscriptionNotFound = errors.New("eventstore: subscription not found")

// ErrPositionNotFound is returned by WaitFor for a position that names no
// event in the log: one that was never appended (or not yet committed), or
// whose event left the log (archived, truncated, expired).
var ErrPositionNotFound = errors.New("eventstore: no event at position")

// waitTargetSQL finds what a wait for position ($2, $3) of subscription $1
// must wait for: the partition owning the event's stream, that
// partition's checkpoint, and the last event of the stream up to the
// position that the subscription selects (its categories and types) and
// has not handled yet (NULL: nothing to wait for). A partition handles its
// streams in log order and its checkpoint, once stored, is at or past each
// event it handled, so the wait is over when that partition's checkpoint
// reaches the target. Only the stream's own events count: a position whose
// stream the subscription does not select needs no wait, whatever else the
// partition is behind on.
//
// Indexes: events_pkey (position) for the event; subscriptions_pkey; the
// stream's events from the event's version backwards on
// events_stream_version_key, stopping at the first one selected.
const waitTargetSQL = `SELECT sub.partitions, e.stream_id IS NOT NULL, p.partition, p.position_tx, p.position_seq,
		t.transaction_id, t.position
	FROM (SELECT partitions, categories, event_types FROM {schema}.subscriptions
		WHERE name = $1 ORDER BY partition LIMIT 1) sub
	LEFT JOIN {schema}.events e ON e.position = $3 AND e.transaction_id = $2
	LEFT JOIN {schema}.subscriptions p ON p.name = $1 AND p.partition =
		CASE WHEN sub.partitions <= 1 THEN 0 ELSE (hashtext(e.stream_id)::bigint & 2147483647) % sub.partitions END
	LEFT JOIN LATERAL (SELECT x.transaction_id, x.position FROM {schema}.events x
		WHERE x.stream_id = e.stream_id AND x.version <= e.version
		  AND (x.transaction_id, x.position) > (p.position_tx, p.position_seq)
		  AND (cardinality(sub.categories) = 0 OR x.category = ANY(sub.categories))
		  AND (cardinality(sub.event_types) = 0 OR x.event_type = ANY(sub.event_types))
		ORDER BY x.version DESC LIMIT 1) t ON true`

// WaitFor waits until the subscription named name has handled the event
// at pos — typically AppendResult.Position, so that a read model the
// subscription builds shows the append — and returns nil. It returns at
// once when the subscription handled pos already, or does not select the
// event (another category or type). It is woken by the commit of the
// subscription's checkpoint, in whatever process the subscription runs
// (a NOTIFY on the channel strata_checkpoints_ and the schema's name),
// not by polling; it waits as long as ctx allows and returns ctx's error
// (wrapped) when ctx ends first.
//
// "Handled" is per stream: the events of pos's stream up to pos that the
// subscription selects are handled (committed, with the handler's writes,
// or parked as dead letters). A subscription with many partitions handles
// other streams independently, so an earlier event of another stream may
// still be unhandled: wait for each position that matters.
//
// The zero Position needs no wait. A subscription that was never
// registered returns ErrSubscriptionNotFound; a position that names no
// event of the log returns ErrPositionNotFound. While it waits, WaitFor
// holds the store's LISTEN connection (opening it if no subscription of
// this process runs; see Listen to keep it open between waits).
func (s *Store) WaitFor(ctx context.Context, name string, pos Position) error {
	if err := checkWaitArgs(name, pos); err != nil {
		return err
	}
	if pos.IsZero() {
		return nil
	}
	w := &waiter{ch: make(chan struct{}, 1)}
	unregister := s.shared.waits.add(name, w)
	defer unregister()
	defer s.holdListener(ctx)()
	for {
		done, err := s.waitCheck(ctx, name, pos, w)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("eventstore: wait for %q to handle %s: %w", name, pos, context.Cause(ctx))
		case <-w.ch:
		}
	}
}

// Listen keeps the store's LISTEN connection open until ctx ends, then
// returns nil: a process that calls WaitFor often without running a
// subscription (one that serves requests while the projections run
// elsewhere) runs it so that each wait finds the connection open instead
// of opening one. A running Subscription keeps it open too.
func (s *Store) Listen(ctx context.Context) error {
	defer s.holdListener(ctx)()
	<-ctx.Done()
	return nil
}

func checkWaitArgs(name string, pos Position) error {
	switch {
	case name == "" || !validText(name) || len(name) > MaxStreamIDLength:
		return fmt.Errorf("%w: wait for subscription %q: name is not valid text of 1 to %d bytes", ErrInvalidArgument, name, MaxStreamIDLength)
	case pos.TxID > 1<<63-1 || pos.Seq < 0:
		return fmt.Errorf("%w: wait for position %s: out of the log's range", ErrInvalidArgument, pos)
	}
	return nil
}

// waitCheck looks up what the wait needs and records in w the partition
// and target a notification must reach to end it.
func (s *Store) waitCheck(ctx context.Context, name string, pos Position, w *waiter) (done bool, err error) {
	var partitions int
	var found bool
	var partition *int32
	var cpTx, cpSeq, tTx, tSeq *int64
	err = s.pool.QueryRow(ctx, s.sql.expand.Replace(waitTargetSQL), name, int64(pos.TxID), pos.Seq).
		Scan(&partitions, &found, &partition, &cpTx, &cpSeq, &tTx, &tSeq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, fmt.Errorf("eventstore: wait for %q: %w", name, ErrSubscriptionNotFound)
	case err != nil:
		if ctx.Err() != nil {
			return false, fmt.Errorf("eventstore: wait for %q to handle %s: %w", name, pos, context.Cause(ctx))
		}
		return false, fmt.Errorf("eventstore: wait for %q to handle %s: %w", name, pos, err)
	case !found:
		return false, fmt.Errorf("eventstore: wait for %q: %w %s", name, ErrPositionNotFound, pos)
	case partition == nil:
		// The partition row is missing: the subscription is being
		// registered again with another partition count. Any checkpoint
		// notification of it makes the wait look again.
		w.set(partitions, -1, Position{})
		return false, nil
	case tTx == nil:
		return true, nil
	}
	w.set(partitions, int(*partition), Position{TxID: uint64(*tTx), Seq: *tSeq})
	return false, nil
}

// checkpointChannel is the LISTEN/NOTIFY channel on which every commit
// that moves a checkpoint of this store's subscriptions notifies (payload
// "partitions/partition/position_tx/position_seq/name"), for WaitFor. It
// fits Postgres' 63-byte limit on names: for a schema name longer than 44
// bytes it ends in the md5 of the name, in hex.
func (s *Store) checkpointChannel() string {
	if ch := "strata_checkpoints_" + s.cfg.Schema; len(ch) <= 63 {
		return ch
	}
	sum := md5.Sum([]byte(s.cfg.Schema))
	return "strata_checkpoints_" + hex.EncodeToString(sum[:])
}

// waiter is one WaitFor: the partition and target a checkpoint must reach,
// and the channel that wakes it (room for one signal; signals coalesce).
type waiter struct {
	ch chan struct{}

	mu         sync.Mutex
	partitions int
	partition  int // -1: any partition of the subscription may be the one
	target     Position
}

func (w *waiter) set(partitions, partition int, target Position) {
	w.mu.Lock()
	w.partitions, w.partition, w.target = partitions, partition, target
	w.mu.Unlock()
}

func (w *waiter) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// offer wakes w when a checkpoint notification may end its wait: its
// partition (or any, when w does not know which) reached the target, or
// the subscription's partition count is not the one w knows.
func (w *waiter) offer(partitions, partition int, cp Position) {
	w.mu.Lock()
	hit := partitions != w.partitions ||
		(w.partition < 0 || partition == w.partition) && !cp.Less(w.target)
	w.mu.Unlock()
	if hit {
		w.wake()
	}
}

// waitRegistry holds this process's waiters by subscription name.
type waitRegistry struct {
	mu    sync.Mutex
	bySub map[string]map[*waiter]struct{}
}

func (r *waitRegistry) add(name string, w *waiter) (remove func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bySub == nil {
		r.bySub = map[string]map[*waiter]struct{}{}
	}
	set := r.bySub[name]
	if set == nil {
		set = map[*waiter]struct{}{}
		r.bySub[name] = set
	}
	set[w] = struct{}{}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		// w's set is the name's current one: a set is dropped only once
		// empty.
		if cur := r.bySub[name]; cur != nil {
			delete(cur, w)
			if len(cur) == 0 {
				delete(r.bySub, name)
			}
		}
	}
}

// deliver hands a checkpoint notification's payload to the waiters of its
// subscription. A payload it cannot read wakes every waiter (each then
// looks at the database).
func (r *waitRegistry) deliver(payload string) {
	parts := strings.SplitN(payload, "/", 5)
	var nums [4]int64
	ok := len(parts) == 5
	for i := 0; ok && i < 4; i++ {
		var err error
		nums[i], err = strconv.ParseInt(parts[i], 10, 64)
		ok = err == nil
	}
	if !ok {
		r.wakeAll()
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.bySub[parts[4]] {
		w.offer(int(nums[0]), int(nums[1]), Position{TxID: uint64(nums[2]), Seq: nums[3]})
	}
}

// wakeAll wakes every waiter, as after the listener (re)connected.
func (r *waitRegistry) wakeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, set := range r.bySub {
		for w := range set {
			w.wake()
		}
	}
}

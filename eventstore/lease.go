package eventstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The lease protocol. Each partition row of a subscription has an owner
// and a lease_until; a process owns the partitions whose lease it renews
// (every LeaseTTL/3, see coordinator) and claims free or expired ones up to
// its fair share: the partitions divided by the live members, counted from
// subscription_members, whose rows every member heartbeats. A worker's
// every checkpoint update is fenced on its owner (worker.advance), so a
// process that lost a lease cannot move the checkpoint any more.

// register creates the subscription's partition rows if they are missing
// and checks that the partition count has not changed.
func (sub *Subscription) register(ctx context.Context) error {
	q := sub.store.pool
	if _, err := q.Exec(ctx, sub.sql.register, sub.cfg.Name, sub.cfg.Partitions, sub.cfg.Categories, sub.cfg.Types); err != nil {
		return fmt.Errorf("eventstore: subscription %q: register: %w", sub.cfg.Name, err)
	}
	var n int
	if err := q.QueryRow(ctx, sub.sql.partitionCount, sub.cfg.Name, sub.cfg.Partitions).Scan(&n); err != nil {
		return fmt.Errorf("eventstore: subscription %q: %w", sub.cfg.Name, err)
	}
	if n != sub.cfg.Partitions {
		return fmt.Errorf("%w: %q has %d partitions, configured with %d; reset it to change", ErrPartitionsChanged, sub.cfg.Name, n, sub.cfg.Partitions)
	}
	return nil
}

// maintain heartbeats this process's membership, renews its leases and
// claims free partitions up to its fair share (all partitions divided by
// the live members, rounded up), releasing any above it. It returns the
// partitions newly claimed (with their checkpoints) and all owned.
func (sub *Subscription) maintain(ctx context.Context, running int) (claimed map[int]checkpoint, owned map[int]bool, surplus []int, err error) {
	q := sub.store.pool
	ttl := sub.cfg.LeaseTTL.Seconds()
	var members int
	if err := q.QueryRow(ctx, sub.sql.heartbeat, sub.cfg.Name, sub.cfg.Owner, ttl).Scan(&members); err != nil {
		return nil, nil, nil, fmt.Errorf("heartbeat: %w", err)
	}
	rows, err := q.Query(ctx, sub.sql.renew, sub.cfg.Name, sub.cfg.Owner, ttl)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("renew: %w", err)
	}
	ownedList, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("renew: %w", err)
	}
	owned = map[int]bool{}
	for _, p := range ownedList {
		owned[int(p)] = true
	}
	share := sub.cfg.Partitions
	if !sub.cfg.StopWhenCaughtUp && members > 1 {
		share = (sub.cfg.Partitions + members - 1) / members
	}

	if extra := len(owned) - share; extra > 0 {
		// Give back the highest partitions (Run stops their workers, then
		// releases them).
		keys := make([]int, 0, len(owned))
		for p := range owned {
			keys = append(keys, p)
		}
		slices.Sort(keys)
		surplus = keys[len(keys)-extra:]
		for _, p := range surplus {
			delete(owned, p)
		}
	}
	claimed = map[int]checkpoint{}
	if want := share - len(owned); want > 0 {
		rows, err := q.Query(ctx, sub.sql.claim, sub.cfg.Name, want, sub.cfg.Owner, ttl)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("claim: %w", err)
		}
		var p int32
		var tx, seq, resets int64
		_, err = pgx.ForEachRow(rows, []any{&p, &tx, &seq, &resets}, func() error {
			claimed[int(p)] = checkpoint{Position{TxID: uint64(tx), Seq: seq}, resets}
			owned[int(p)] = true
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("claim: %w", err)
		}
	}
	// Partitions owned but without a worker (one that exited after a fence)
	// restart from their stored checkpoint.
	if running < len(owned) {
		rows, err := q.Query(ctx, sub.sql.ownedCheckpoints, sub.cfg.Name, sub.cfg.Owner)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("checkpoints: %w", err)
		}
		var p int32
		var tx, seq, resets int64
		_, err = pgx.ForEachRow(rows, []any{&p, &tx, &seq, &resets}, func() error {
			if _, ok := claimed[int(p)]; !ok {
				claimed[int(p)] = checkpoint{Position{TxID: uint64(tx), Seq: seq}, resets}
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("checkpoints: %w", err)
		}
	}
	return claimed, owned, surplus, nil
}

// balanced reports whether this process, running workers partitions,
// holds its fair share as maintain would count it: not more than the
// share, and not fewer while partitions are free to claim. One cheap
// statement, so that the coordinator can look between lease renewals and
// rebalance as soon as a process joins or leaves, instead of up to
// LeaseTTL/3 later (during which a joining process would idle while
// another ran all the partitions).
func (sub *Subscription) balanced(ctx context.Context, workers int) (bool, error) {
	var others, free int
	if err := sub.store.pool.QueryRow(ctx, sub.sql.balance, sub.cfg.Name, sub.cfg.Owner).Scan(&others, &free); err != nil {
		return false, err
	}
	share := sub.cfg.Partitions
	if !sub.cfg.StopWhenCaughtUp && others > 0 {
		share = (sub.cfg.Partitions + others) / (others + 1)
	}
	return workers <= share && (workers == share || free == 0), nil
}

// release gives back one partition's lease.
func (sub *Subscription) release(ctx context.Context, p int) error {
	_, err := sub.store.pool.Exec(ctx, sub.sql.release, sub.cfg.Name, p, sub.cfg.Owner)
	return err
}

// leave gives back this process's leases and membership on the way out, so
// that another process takes over at once instead of after LeaseTTL.
func (sub *Subscription) leave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := sub.store.pool.Exec(ctx, sub.sql.leave, sub.cfg.Name, sub.cfg.Owner); err != nil {
		sub.log.Warn("strata: could not release leases; others take over after the lease expires", "err", err)
	}
}

// checkpoint is a partition's stored checkpoint with its count of resets,
// the fence of the partition's next batch.
type checkpoint struct {
	Position
	resets int64
}

// leaseQueries are the statements of the lease protocol.
type leaseQueries struct {
	register, partitionCount, heartbeat, renew, claim, release, leave, ownedCheckpoints, balance string
}

func buildLeaseQueries(r *strings.Replacer) leaseQueries {
	return leaseQueries{
		// Creates the partition rows unless the subscription exists with
		// another partition count (then Run reports the mismatch).
		register: r.Replace(`INSERT INTO {schema}.subscriptions (name, partition, partitions, categories, event_types)
			SELECT $1, p, $2, $3, $4 FROM generate_series(0, $2 - 1) AS p
			WHERE NOT EXISTS (SELECT 1 FROM {schema}.subscriptions WHERE name = $1 AND partitions <> $2)
			ON CONFLICT (name, partition) DO UPDATE SET categories = EXCLUDED.categories, event_types = EXCLUDED.event_types`),
		partitionCount: r.Replace(`SELECT coalesce(max(partitions) FILTER (WHERE partitions <> $2), count(*))::int FROM {schema}.subscriptions WHERE name = $1`),
		// Upsert this member and count the live ones (the count cannot see
		// a first insert in the same statement, hence the greatest()).
		heartbeat: r.Replace(`WITH me AS (
				INSERT INTO {schema}.subscription_members (name, owner, seen_until)
				VALUES ($1, $2, now() + make_interval(secs => $3))
				ON CONFLICT (name, owner) DO UPDATE SET seen_until = EXCLUDED.seen_until
				RETURNING 1)
			SELECT greatest(count(*) FILTER (WHERE owner <> $2) + 1, 1)::int
			FROM {schema}.subscription_members WHERE name = $1 AND seen_until > now()`),
		renew: r.Replace(`UPDATE {schema}.subscriptions SET lease_until = now() + make_interval(secs => $3)
			WHERE name = $1 AND owner = $2 AND lease_until > now()
			RETURNING partition`),
		// SKIP LOCKED: processes starting together do not queue on each
		// other's candidate rows.
		claim: r.Replace(`WITH free AS (
				SELECT partition FROM {schema}.subscriptions
				WHERE name = $1 AND (owner IS NULL OR lease_until IS NULL OR lease_until <= now())
				ORDER BY partition LIMIT $2
				FOR UPDATE SKIP LOCKED)
			UPDATE {schema}.subscriptions s
			SET owner = $3, lease_until = now() + make_interval(secs => $4), state = 'running', updated_at = now()
			FROM free WHERE s.name = $1 AND s.partition = free.partition
			RETURNING s.partition, s.position_tx, s.position_seq, s.resets`),
		release: r.Replace(`UPDATE {schema}.subscriptions SET owner = NULL, lease_until = NULL, state = 'idle', updated_at = now()
			WHERE name = $1 AND partition = $2 AND owner = $3`),
		leave: r.Replace(`WITH gone AS (DELETE FROM {schema}.subscription_members WHERE name = $1 AND owner = $2)
			UPDATE {schema}.subscriptions SET owner = NULL, lease_until = NULL,
				state = CASE WHEN state = 'failing' THEN state ELSE 'stopped' END, updated_at = now()
			WHERE name = $1 AND owner = $2`),
		// The live members other than this one, and the partitions no
		// live lease holds (balanced's cheap look between renewals).
		balance: r.Replace(`SELECT
				(SELECT count(*) FROM {schema}.subscription_members WHERE name = $1 AND owner <> $2 AND seen_until > now())::int,
				(SELECT count(*) FROM {schema}.subscriptions WHERE name = $1 AND (owner IS NULL OR lease_until IS NULL OR lease_until <= now()))::int`),
		ownedCheckpoints: r.Replace(`SELECT partition, position_tx, position_seq, resets FROM {schema}.subscriptions WHERE name = $1 AND owner = $2`),
	}
}

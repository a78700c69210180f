-- Subscriptions: the one mechanism through which projections, the outbox
-- relay and the Postgres Pub/Sub read the log. Each subscription is split
-- into one or more partitions (by a hash of the stream ID); each partition
-- has a checkpoint and a lease.

-- One row per subscription partition. The checkpoint (position_tx,
-- position_seq) is the last log position handled. owner/lease_until is the
-- lease: a process may handle the partition only while it owns an unexpired
-- lease, and every checkpoint update is fenced on the owner and on the old
-- checkpoint, so a process that lost its lease (or a reset) cannot commit.
CREATE TABLE subscriptions (
    name           text        NOT NULL,
    partition      integer     NOT NULL,
    partitions     integer     NOT NULL,
    categories     text[]      NOT NULL DEFAULT '{}',
    event_types    text[]      NOT NULL DEFAULT '{}',
    position_tx    bigint      NOT NULL DEFAULT 0,
    position_seq   bigint      NOT NULL DEFAULT 0,
    owner          text,
    lease_until    timestamptz,
    state          text        NOT NULL DEFAULT 'idle',
    last_error     text,
    events_handled bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, partition)
);

-- Processes running a subscription, so each can take a fair share of its
-- partitions. A member is live while seen_until is in the future.
CREATE TABLE subscription_members (
    name       text        NOT NULL,
    owner      text        NOT NULL,
    seen_until timestamptz NOT NULL,
    PRIMARY KEY (name, owner)
);

-- Events a subscription's handler failed on (after its retries), and the
-- later events of the same stream parked behind them so that a stream's
-- order is never broken. blocked_by points at the first dead letter of the
-- stream. retry_requested asks the owning process to run them again, in
-- order.
CREATE TABLE dead_letters (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription    text        NOT NULL,
    partition       integer     NOT NULL,
    position_tx     bigint      NOT NULL,
    position_seq    bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    event_type      text        NOT NULL,
    error           text        NOT NULL,
    attempts        integer     NOT NULL,
    blocked_by      bigint,
    retry_requested boolean     NOT NULL DEFAULT false,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dead_letters_event_key UNIQUE (subscription, event_id)
);
CREATE INDEX dead_letters_partition_idx ON dead_letters (subscription, partition, id);

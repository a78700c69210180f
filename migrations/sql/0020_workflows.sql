-- Workflows (package workflow): process managers whose instances each
-- have their own event stream ("<workflow>-<key>"), their queued inputs
-- and their durable deadlines. Instances and deadlines are written only
-- inside a workflow's reaction transaction, which also commits the
-- instance's events, its outgoing events and the removal of its input
-- (the queued event, or the deadline that fired), so they never disagree
-- with the log.

-- One row per instance that has started (recorded at least one event):
-- its status and its stream's version, for `strata status` and to ignore
-- the inputs of finished instances without reading their streams.
CREATE TABLE workflow_instances (
    workflow       text        NOT NULL,
    instance_key   text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('running', 'finished')),
    version        bigint      NOT NULL CHECK (version > 0),
    correlation_id text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, instance_key)
);

-- Counting a workflow's instances by status.
CREATE INDEX workflow_instances_status_idx ON workflow_instances (workflow, status);

-- A deadline scheduled by an instance: at most one per (instance, name);
-- scheduling a name again moves it. Firing deletes the row in the
-- transaction of the reaction to it; cancelling deletes it in the
-- reaction that makes it moot. A deadline whose reaction keeps failing is
-- retried at retry_at, and after the workflow's MaxAttempts it is parked
-- (failed) until retried by an operator.
CREATE TABLE workflow_deadlines (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow     text        NOT NULL,
    instance_key text        NOT NULL,
    name         text        NOT NULL,
    due_at       timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    retry_at     timestamptz,
    failed       boolean     NOT NULL DEFAULT false,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_deadlines_name_key UNIQUE (workflow, instance_key, name)
);

-- The deadline worker's scan: the due deadlines of a workflow in due
-- order (WHERE workflow = $1 AND due_at <= $2 AND NOT failed ORDER BY
-- due_at, id).
CREATE INDEX workflow_deadlines_due_idx ON workflow_deadlines (workflow, due_at, id) WHERE NOT failed;

-- A workflow's inputs, routed to their instances. The workflow's
-- subscription reads the log in order (one partition) and copies each
-- event an instance is for here, in the transaction of its checkpoint;
-- reaction workers in any number of processes then take an instance at a
-- time (under the instance's lock), react to its inputs in log order
-- (id order) and delete them in the transaction of the reaction. An
-- input whose reaction keeps failing is parked (failed) with the inputs
-- of its instance behind it, until retried.
CREATE TABLE workflow_inbox (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow       text        NOT NULL,
    instance_key   text        NOT NULL,
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL,
    position_tx    bigint      NOT NULL,
    position_seq   bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    data           json        NOT NULL,
    metadata       json,
    recorded_at    timestamptz NOT NULL,
    attempts       integer     NOT NULL DEFAULT 0,
    retry_at       timestamptz,
    failed         boolean     NOT NULL DEFAULT false,
    last_error     text
);

-- The workers' scan (the oldest inputs of a workflow) and an instance's
-- inputs in order.
CREATE INDEX workflow_inbox_order_idx ON workflow_inbox (workflow, id);
CREATE INDEX workflow_inbox_instance_idx ON workflow_inbox (workflow, instance_key, id);

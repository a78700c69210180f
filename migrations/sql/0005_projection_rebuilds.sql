-- Projection rebuilds in progress (package projection). A row is written in
-- the same transaction that wipes the read model and moves the projection's
-- subscription back to the start of the log, and deleted once the rebuild
-- has caught up; a rebuild that was killed finds its row and resumes from
-- the subscription's checkpoint instead of starting over.
CREATE TABLE projection_rebuilds (
    subscription text        PRIMARY KEY,
    -- The log's head when the rebuild began: the rebuild is done once every
    -- partition has read past it (or has nothing left to read).
    target_tx    bigint      NOT NULL,
    target_seq   bigint      NOT NULL,
    -- Events the rebuild had to replay when it began (for progress).
    total        bigint      NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now()
);

-- The transaction ID of the last append to each stream. The log is ordered
-- by transaction ID, so a stream's versions follow the log's order only if
-- each append's transaction ID is at least that of the stream's previous
-- append. Append guarantees it with an advisory lock taken before its
-- transaction gets an ID; AppendTx cannot (the caller's transaction may have
-- its ID already), so its statement refuses to write when last_tx is later
-- than its own transaction ID, and the caller retries in a new transaction.
-- Streams written before this migration have 0: any append may follow.
ALTER TABLE streams ADD COLUMN last_tx bigint NOT NULL DEFAULT 0;

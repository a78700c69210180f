-- Consumer-side deduplication for messages relayed by the outbox
-- (outbox.Deduplicator). A consumer records each message ID it handled in
-- the same transaction as its own effects, so a redelivered message finds
-- its row and has no second effect.

-- One row per (consumer, message): the primary key is what makes a second
-- delivery a no-op (INSERT ... ON CONFLICT DO NOTHING affects no row).
CREATE TABLE processed_messages (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Expiry deletes a consumer's old rows by age.
CREATE INDEX processed_messages_age_idx ON processed_messages (consumer, processed_at);

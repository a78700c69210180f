-- A handler's output messages, kept with its processed record
-- (outbox.Deduplicator). Watermill's router publishes a handler's outputs
-- after the handler's transaction committed; when that publish fails the
-- message is redelivered, found processed, and its outputs are handed back
-- from here so the router publishes them again. NULL: no outputs.
--
-- A JSON array of {"uuid", "payload", "metadata": [[key, value], ...]},
-- every string base64-encoded so that any bytes round-trip.
ALTER TABLE processed_messages ADD COLUMN outputs jsonb;

-- How many times each subscription partition was reset. Every checkpoint
-- update is fenced on it too: a reset to the very position a running batch
-- started from (a rebuild from the start while the first batch is in
-- flight, say) would otherwise leave the fence on the old checkpoint
-- intact, and the batch would commit over the reset.
ALTER TABLE subscriptions ADD COLUMN resets bigint NOT NULL DEFAULT 0;

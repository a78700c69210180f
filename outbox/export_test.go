package outbox

// ExpireBatch is the most rows one statement of Deduplicator.Expire deletes.
const ExpireBatch = expireBatch

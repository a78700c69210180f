-- Finding every event one request caused (eventstore.Store.ReadCorrelated,
-- `strata trace`) looks events up by correlation ID. Partial: events
-- without one cost nothing.
--
-- CREATE INDEX blocks appends while it builds. On a large existing log,
-- build it first without blocking, under the same name, and this file
-- then finds it:
--   CREATE INDEX CONCURRENTLY events_correlation_idx ON strata.events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_correlation_idx ON events (correlation_id) WHERE correlation_id IS NOT NULL;

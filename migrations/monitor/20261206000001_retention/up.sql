-- Retention of the event store (MONITOR_RETENTION, off by default): ended sagas whose last event
-- is older than the cutoff are deleted with their events, oldest first, a bounded batch per
-- statement. Unfinished sagas are never deleted: they are what an operator is looking for.

-- The batch's candidates, oldest first, without scanning the sagas that are still running (those
-- have `sagas_unfinished`).
CREATE INDEX sagas_ended ON sagas (last_event_at) WHERE state IN ('completed', 'failed', 'cancelled');

-- Events outside any saga have no saga row to age by; they go by the time they were recorded.
CREATE INDEX saga_events_without_saga ON saga_events (recorded_at) WHERE saga_id IS NULL;

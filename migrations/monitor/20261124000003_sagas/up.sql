-- One row per saga, maintained from the event store in the same transaction as each event:
-- what state the saga is in and when it last moved. It is what the in-flight gauges and the
-- stuck-saga query read, without scanning the whole event store.
CREATE TABLE sagas (
    saga_id         BIGINT PRIMARY KEY,
    -- in_flight until its order ends; cancelling while a cancellation is being compensated.
    state           TEXT NOT NULL CHECK (state IN ('in_flight', 'cancelling', 'completed', 'failed', 'cancelled')),
    started_at      TIMESTAMPTZ NOT NULL,
    last_event_at   TIMESTAMPTZ NOT NULL,
    last_event_type TEXT NOT NULL,
    -- How many compensations (coupon/stock restoration chains) started and finished.
    compensating    BOOLEAN NOT NULL DEFAULT false
);

-- Stuck sagas: unfinished and idle the longest.
CREATE INDEX sagas_unfinished ON sagas (last_event_at) WHERE state IN ('in_flight', 'cancelling');

-- The saga monitor's event store (docs/design.md#the-saga-monitor): every saga event,
-- append-only, as it was published. It is what a saga's timeline is read from, and it gives
-- every event type at least one consumer, so the relay's mandatory publishes of terminal
-- events (OrderCompleted, ...) are routable.

CREATE TABLE saga_events (
    -- The event id: the inbox already drops redeliveries, the key makes a second row impossible.
    event_id     UUID PRIMARY KEY,
    saga_id      BIGINT,
    event_type   TEXT NOT NULL,
    causation_id UUID,
    occurred_at  TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    traceparent  TEXT,
    payload      JSONB NOT NULL
);

-- A saga's timeline, in order.
CREATE INDEX saga_events_saga ON saga_events (saga_id, occurred_at);

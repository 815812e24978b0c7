-- The transactional outbox and the inbox. Every service database carries both tables: a service
-- writes its state change, the inbox claim of the message it is handling and the outbox rows of
-- the events it emits in ONE local transaction. The outbox relay is the only reader of `outbox`;
-- the consumer runtime is the only writer of `inbox`.

-- ---------------------------------------------------------------------------------------------
-- outbox: events committed by the service, waiting to be published.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE outbox (
    -- Only used to claim rows in a stable order and to address them when marking. It is NOT a
    -- resume offset: sequence values are handed out at INSERT but become visible at COMMIT, so a
    -- lower id can appear after a higher one. The relay claims by state (`published_at IS NULL`).
    id              BIGSERIAL PRIMARY KEY,
    -- The event id, sent as the AMQP message id and used by every consumer's inbox to drop
    -- duplicates. Unique so that a handler enqueueing the same event twice fails loudly.
    event_id        UUID        NOT NULL UNIQUE,
    event_type      TEXT        NOT NULL,
    -- Where the relay publishes: the saga events exchange is chosen by the relay's config, the
    -- routing key is chosen by whoever wrote the row (normally the event type).
    routing_key     TEXT        NOT NULL,
    -- The saga (order) the event belongs to; NULL for events outside a saga.
    saga_id         BIGINT,
    -- The exact bytes to publish (the JSON envelope). Stored as bytes, not JSONB, so that what the
    -- relay sends is byte for byte what the service committed, and the relay never re-encodes.
    body            BYTEA       NOT NULL,
    content_type    TEXT        NOT NULL DEFAULT 'application/json',
    -- AMQP headers besides the ones derived from the columns above (trace context, causation).
    headers         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set by the relay only after the broker confirmed the publish. NULL means "still to do".
    published_at    TIMESTAMPTZ,
    -- Failed publish attempts (broker nack, unroutable return) and the last reason, so that a stuck
    -- row tells an operator why. A failing row is retried after `next_attempt_at`, so one poison
    -- row never blocks the rows behind it.
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ
);

-- The relay's claim query scans this index only: it holds exactly the unpublished rows, so it
-- stays small however many published rows await cleanup.
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- Retention cleanup deletes published rows older than a cutoff without a full scan.
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay at commit time. NOTIFY is transactional: it is delivered when (and only if) the
-- inserting transaction commits, so a rolled-back row never wakes anyone. A statement trigger
-- sends one notification per INSERT statement, and PostgreSQL folds identical notifications of
-- one transaction into one. NOTIFY is only a hint: the relay also polls, and after every
-- reconnect it queries for pending rows, because notifications sent while it was away are lost.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_pending', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify_after_insert
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- ---------------------------------------------------------------------------------------------
-- inbox: messages a consumer has already applied.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE inbox (
    -- The consumer (queue) that applied the message: one database may host several consumers,
    -- and each must apply a given event once.
    consumer     TEXT        NOT NULL,
    -- The AMQP message id = the producer's event id.
    message_id   UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The primary key IS the deduplication: the claim is `INSERT .. ON CONFLICT DO NOTHING` in the
    -- handler's transaction. A concurrent second delivery blocks on the first one's uncommitted
    -- key and then sees the conflict; if the first rolls back, the second proceeds.
    PRIMARY KEY (consumer, message_id)
);

-- Lets an operator (and a future retention job) find old claims without a scan.
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);

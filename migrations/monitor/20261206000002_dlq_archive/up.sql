-- The dead-letter archive: every message a purge removed from a dead-letter queue, kept so that
-- an operator can list it and restore it to that queue later. Written by the purge (`sagactl`
-- and the admin API alike) and committed *before* the message is acked from its queue: a purge
-- killed in between leaves the message in the queue and its row here, and purging it again
-- only rewrites the row (see the unique key), so nothing is lost and nothing is doubled.
CREATE TABLE dlq_archive (
    id               BIGSERIAL PRIMARY KEY,
    -- The dead-letter queue it was purged from: where a restore puts it back.
    queue            TEXT NOT NULL,
    -- The AMQP message id (= event id); for a message without one, `sha256:` and the digest of
    -- its body, so that the unique key still tells messages apart.
    event_id         TEXT NOT NULL,
    -- Read from the message when it was purged, for filtering in SQL; the message itself
    -- (`body`, `properties`) stays the authority.
    event_type       TEXT,
    saga_id          BIGINT,
    -- The summary group (queue, event type, error class) it belonged to: `--group` selects by it.
    group_id         TEXT NOT NULL,
    reason           TEXT,
    error            TEXT,
    dead_lettered_at TIMESTAMPTZ,
    -- The body exactly as it was on the queue (still sealed: the archive holds no plaintext).
    body             BYTEA NOT NULL,
    -- The AMQP properties and headers as lapin serializes them, restored as they were.
    properties       JSONB NOT NULL,
    purged_by        TEXT NOT NULL,
    purged_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when a restore's copy was confirmed by the broker; a restore only takes rows where it
    -- is NULL, so restoring twice does not put a message back twice.
    restored_by      TEXT,
    restored_at      TIMESTAMPTZ,
    -- One row per message and queue: the idempotency key of the purge. Purging again (after a
    -- crash before the ack, or after a restore and a new failure) updates the row and makes it
    -- restorable again.
    CONSTRAINT dlq_archive_message UNIQUE (queue, event_id)
);

-- `archive list` reads newest first; a restore takes the rows not restored yet.
CREATE INDEX dlq_archive_purged_at ON dlq_archive (purged_at DESC);
CREATE INDEX dlq_archive_pending ON dlq_archive (queue, group_id) WHERE restored_at IS NULL;

-- A restore is audited like a replay or a purge.
ALTER TABLE dlq_audit DROP CONSTRAINT dlq_audit_operation_check;
ALTER TABLE dlq_audit ADD CONSTRAINT dlq_audit_operation_check
    CHECK (operation IN ('replay', 'purge', 'restore'));

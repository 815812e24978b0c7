-- The audit trail of dead-letter operations: who replayed or purged what, when, with which
-- filter, and how it went. Written by `sagactl` and by the admin API alike, after the operation
-- (a row per operation, also for dry runs and failures), and never updated.
CREATE TABLE dlq_audit (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- `user@host` for the CLI, `admin-api <peer address>` for the HTTP API.
    actor      TEXT NOT NULL,
    operation  TEXT NOT NULL CHECK (operation IN ('replay', 'purge')),
    dry_run    BOOLEAN NOT NULL,
    filter     JSONB NOT NULL,
    -- The messages actually moved (replayed or purged); those that matched but failed are in
    -- `details`.
    event_ids  TEXT[] NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('ok', 'partial', 'failed')),
    details    JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX dlq_audit_at ON dlq_audit (at DESC);

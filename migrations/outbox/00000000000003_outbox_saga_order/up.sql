-- Per-saga order at the relay: a row is claimed only when no earlier row of its saga is still
-- unpublished (held by another claimer, or waiting for a retry). That check is one probe of
-- this index per candidate row; like the claim index, it holds only the unpublished rows.
CREATE INDEX outbox_unpublished_saga_idx ON outbox (saga_id, id)
    WHERE published_at IS NULL AND saga_id IS NOT NULL;

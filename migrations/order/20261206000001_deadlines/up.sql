-- Deadlines (docs/design.md#deadlines): an order still PENDING at its deadline is ended by the
-- order service, FAILED with code `timeout`, and its participants undo what they did.

-- Fixed when the order is accepted (SAGA_DEADLINE after it), so that changing the setting never
-- moves the deadline of an order already in flight. Orders from before this column get the
-- default deadline from their acceptance.
ALTER TABLE orders ADD COLUMN deadline_at TIMESTAMPTZ;
UPDATE orders SET deadline_at = created_at + interval '5 minutes';
ALTER TABLE orders ALTER COLUMN deadline_at SET NOT NULL;

-- The trace the order's request started: events the order service emits later without an
-- incoming event (a timeout) continue it, so that one saga stays one trace.
ALTER TABLE orders ADD COLUMN traceparent TEXT CHECK (length(traceparent) <= 55);

-- The sweep: the PENDING orders past their deadline, oldest deadline first. Only PENDING rows
-- are indexed, so the index stays as small as the number of sagas in flight.
CREATE INDEX orders_pending_deadline ON orders (deadline_at, id) WHERE status = 'PENDING';

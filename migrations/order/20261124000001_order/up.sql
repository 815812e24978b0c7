-- The order service: orders and their saga state. The saga itself is choreographed; this table
-- is where each order's outcome is decided and read.

CREATE TABLE orders (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL CHECK (user_id > 0),
    -- PENDING until the saga ends: COMPLETED (paid), FAILED (compensated). A COMPLETED order can
    -- be cancelled: CANCELLING while refund, coupon and stock are restored, then CANCELLED.
    status          TEXT NOT NULL
                    CHECK (status IN ('PENDING', 'COMPLETED', 'FAILED', 'CANCELLING', 'CANCELLED')),
    user_coupon_id  BIGINT CHECK (user_coupon_id > 0),
    -- Known once the saga priced and paid the order; NULL before.
    total_amount    NUMERIC(14, 2),
    discount_amount NUMERIC(14, 2),
    paid_amount     NUMERIC(14, 2),
    -- Why it failed: a stable code (metric label) and a human-readable reason.
    failure_code    TEXT,
    failure_reason  TEXT,
    -- Idempotency-Key of the request that created it, and the request it stood for: the same key
    -- with the same request returns this order, with another request is a conflict.
    idempotency_key TEXT CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    request         TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((idempotency_key IS NULL) = (request IS NULL))
);

-- One order per (user, key); NULL keys never collide. The unique index is also what makes two
-- concurrent requests with one key create one order.
CREATE UNIQUE INDEX orders_idempotency ON orders (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A user's orders, newest first.
CREATE INDEX orders_user ON orders (user_id, id DESC);

CREATE TABLE order_items (
    order_id   BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id BIGINT NOT NULL CHECK (product_id > 0),
    quantity   INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    -- The price the product service charged, once known.
    unit_price NUMERIC(14, 2),
    -- One line per product: a duplicate product in one order is refused at the door.
    PRIMARY KEY (order_id, product_id)
);

-- Long polls (`GET /orders/{id}?wait_ms=`) on any instance wake when an order's status changes,
-- whichever instance changed it: NOTIFY reaches every listener on this database, at commit.
CREATE FUNCTION order_status_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify('order_status', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER order_status_notify_after_update
    AFTER UPDATE OF status ON orders
    FOR EACH ROW EXECUTE FUNCTION order_status_notify();

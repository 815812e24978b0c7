-- The product service: what is for sale, at what price, how many are left, and a ledger that
-- explains every change of a stock level.

CREATE TABLE products (
    id         BIGSERIAL PRIMARY KEY,
    -- Counted in characters, not bytes, like the API's rule (1..=200).
    name       TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- NUMERIC, never float; two decimals like every amount of the saga. The price is read at
    -- reservation time and travels in the events, so changing it never reprices an order.
    price      NUMERIC(14, 2) NOT NULL CHECK (price >= 0),
    -- Every decrement is a conditional update (`stock >= quantity`) on a row the saga step
    -- locked first; the CHECK is the last line of defence against overselling.
    stock      INTEGER NOT NULL CHECK (stock >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every change of a stock level, in the transaction that made it: a reservation or restoration
-- for an order, or a manual adjustment over HTTP.
CREATE TABLE stock_movements (
    id          BIGSERIAL PRIMARY KEY,
    -- Products are never deleted, so the ledger can always name its product.
    product_id  BIGINT NOT NULL REFERENCES products (id),
    -- The order a reservation or restoration belongs to; NULL for adjustments.
    order_id    BIGINT,
    kind        TEXT NOT NULL CHECK (kind IN ('RESERVE', 'RESTORE', 'ADJUST')),
    -- Signed, so that summing a product's deltas gives its stock: a reservation is negative,
    -- a restoration positive, an adjustment either. Zero is never a movement.
    delta       INTEGER NOT NULL CHECK (delta <> 0),
    -- The stock right after this movement, for audits without replaying the ledger.
    stock_after INTEGER NOT NULL CHECK (stock_after >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'ADJUST') = (order_id IS NULL)),
    CHECK (kind <> 'RESERVE' OR delta < 0),
    CHECK (kind <> 'RESTORE' OR delta > 0)
);

-- At most one reservation and one restoration per order and product, whatever arrives twice:
-- the saga's own idempotency guard below the inbox, and what lets a restoration give back
-- exactly what the order reserved (it reads the RESERVE rows, not the event). Its order_id
-- prefix also serves "this order's movements of this kind".
CREATE UNIQUE INDEX stock_movements_order_product_kind
    ON stock_movements (order_id, product_id, kind)
    WHERE order_id IS NOT NULL;

-- A product's ledger, oldest first (audits); also covers the foreign key.
CREATE INDEX stock_movements_product ON stock_movements (product_id, id);

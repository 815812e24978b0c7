-- The balance service: users' prepaid money, and a ledger that explains every cent of it.

-- One row per user who was ever charged. A user never seen has no row and a balance of 0.
CREATE TABLE balances (
    user_id    BIGINT PRIMARY KEY CHECK (user_id > 0),
    -- NUMERIC, never float. The CHECK is the last line of defence: payments are conditional
    -- updates (`balance >= amount`), so concurrent orders can never drive a balance negative.
    balance    NUMERIC(14, 2) NOT NULL CHECK (balance >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every change of a balance, in the transaction that made it.
CREATE TABLE balance_history (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('CHARGE', 'PAYMENT', 'REFUND')),
    -- Always positive; `kind` says which way it moved.
    amount        NUMERIC(14, 2) NOT NULL CHECK (amount >= 0),
    -- The order a payment or refund belongs to (NULL for charges).
    order_id      BIGINT,
    balance_after NUMERIC(14, 2) NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'CHARGE') = (order_id IS NULL))
);

-- At most one payment and one refund per order, whatever arrives twice: the saga's own
-- idempotency guard below the inbox, and what makes a refund restore exactly the payment.
CREATE UNIQUE INDEX balance_history_order_kind ON balance_history (order_id, kind) WHERE order_id IS NOT NULL;

-- History pages, newest first.
CREATE INDEX balance_history_user ON balance_history (user_id, id DESC);

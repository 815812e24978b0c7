-- The coupon service: coupons issued first come, first served, and a ledger of what each order
-- did with the one it used.

-- A coupon campaign: what it is worth and how many of it exist.
CREATE TABLE coupons (
    id              BIGSERIAL PRIMARY KEY,
    -- Shown to users; the API trims it and caps it at 100 characters, the CHECK keeps a stray
    -- writer from storing an empty one.
    name            TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- FIXED takes `discount_value` off the order; PERCENT takes that percentage of it.
    discount_type   TEXT NOT NULL CHECK (discount_type IN ('FIXED', 'PERCENT')),
    -- NUMERIC, never float: an amount for FIXED, a percentage for PERCENT.
    discount_value  NUMERIC(14, 2) NOT NULL CHECK (discount_value > 0),
    -- How many can ever be issued (the API caps it at 1 000 000).
    total_quantity  INTEGER NOT NULL CHECK (total_quantity > 0),
    -- How many were issued. Issuing is a conditional update (`issued_quantity < total_quantity`)
    -- on this row, whose row lock queues concurrent requests: first come, first served. The
    -- CHECK is the last line of defence against over-issuing.
    issued_quantity INTEGER NOT NULL DEFAULT 0
        CHECK (issued_quantity >= 0 AND issued_quantity <= total_quantity),
    -- NULL: never expires. Past it, the coupon is neither issued nor usable.
    expires_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A percentage above 100 would make the discount exceed the order.
    CHECK (discount_type <> 'PERCENT' OR discount_value BETWEEN 1 AND 100)
);

-- One coupon issued to one user: AVAILABLE until an order uses it, AVAILABLE again if that
-- order is compensated.
CREATE TABLE user_coupons (
    id         BIGSERIAL PRIMARY KEY,
    coupon_id  BIGINT NOT NULL REFERENCES coupons (id),
    -- Users live in another service: no foreign key, only the shape of an id.
    user_id    BIGINT NOT NULL CHECK (user_id > 0),
    status     TEXT NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'USED')),
    -- The order that used it: what a compensation matches on, so that it restores the coupon
    -- of its own order and nothing else.
    order_id   BIGINT,
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- At most one per user per coupon, whatever arrives concurrently: a second issue fails on
    -- this key and rolls back its transaction, count included. Named, because the service
    -- recognises it in the error to answer `already_issued`.
    CONSTRAINT user_coupons_one_per_user UNIQUE (coupon_id, user_id),
    -- USED exactly when an order holds it, and since when.
    CHECK ((status = 'USED') = (order_id IS NOT NULL)),
    CHECK ((status = 'USED') = (used_at IS NOT NULL))
);

-- A user's coupons, newest first (the list endpoint's pages).
CREATE INDEX user_coupons_user ON user_coupons (user_id, id DESC);

-- What each order did with its coupon, in the transaction that did it.
CREATE TABLE coupon_usages (
    id              BIGSERIAL PRIMARY KEY,
    user_coupon_id  BIGINT NOT NULL REFERENCES user_coupons (id),
    order_id        BIGINT NOT NULL,
    -- USE when the order took the coupon, RESTORE when its compensation gave it back.
    kind            TEXT NOT NULL CHECK (kind IN ('USE', 'RESTORE')),
    -- The discount the order got (a RESTORE repeats the one it gives back).
    discount_amount NUMERIC(14, 2) NOT NULL CHECK (discount_amount >= 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A coupon use and its restoration happen at most once per order, whatever arrives twice:
    -- the saga's own idempotency guard below the inbox, and what makes a restoration undo
    -- exactly the use. It also serves the per-order lookups of both saga steps.
    UNIQUE (order_id, kind)
);

-- The sagas a participant (product, coupon, balance) closed because the order missed its
-- deadline (docs/design.md#deadlines). A step of a closed saga that arrives later, delivered
-- late or replayed from a dead-letter queue long after the inbox forgot its id, is refused.
-- Closing and every forward step take the same row lock of the participant's own data first
-- (the products, the user coupon, the balance), so whichever commits second sees the other.
-- The order and monitor databases carry the table too (one migration set) and never write it.
CREATE TABLE closed_sagas (
    order_id   BIGINT PRIMARY KEY,
    closed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

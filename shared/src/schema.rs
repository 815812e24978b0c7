//! Diesel table definitions of the outbox and inbox (see `migrations/outbox` for the why).

diesel::table! {
    outbox (id) {
        id -> BigInt,
        event_id -> Uuid,
        event_type -> Text,
        routing_key -> Text,
        saga_id -> Nullable<BigInt>,
        body -> Bytea,
        content_type -> Text,
        headers -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    inbox (consumer, message_id) {
        consumer -> Text,
        message_id -> Uuid,
        event_type -> Text,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    closed_sagas (order_id) {
        order_id -> BigInt,
        closed_at -> Timestamptz,
    }
}

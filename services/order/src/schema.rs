//! Diesel tables of the order database.

diesel::table! {
    orders (id) {
        id -> BigInt,
        user_id -> BigInt,
        status -> Text,
        user_coupon_id -> Nullable<BigInt>,
        total_amount -> Nullable<Numeric>,
        discount_amount -> Nullable<Numeric>,
        paid_amount -> Nullable<Numeric>,
        failure_code -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        request -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deadline_at -> Timestamptz,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    order_items (order_id, product_id) {
        order_id -> BigInt,
        product_id -> BigInt,
        quantity -> Integer,
        unit_price -> Nullable<Numeric>,
    }
}

diesel::joinable!(order_items -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(orders, order_items);

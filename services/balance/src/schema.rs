//! Diesel tables of the balance database.

diesel::table! {
    balances (user_id) {
        user_id -> BigInt,
        balance -> Numeric,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    balance_history (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        amount -> Numeric,
        order_id -> Nullable<BigInt>,
        balance_after -> Numeric,
        created_at -> Timestamptz,
    }
}

//! Diesel tables of the product database.

diesel::table! {
    products (id) {
        id -> BigInt,
        name -> Text,
        price -> Numeric,
        stock -> Integer,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stock_movements (id) {
        id -> BigInt,
        product_id -> BigInt,
        order_id -> Nullable<BigInt>,
        kind -> Text,
        delta -> Integer,
        stock_after -> Integer,
        created_at -> Timestamptz,
    }
}

//! Diesel tables of the coupon database.

diesel::table! {
    coupons (id) {
        id -> BigInt,
        name -> Text,
        discount_type -> Text,
        discount_value -> Numeric,
        total_quantity -> Integer,
        issued_quantity -> Integer,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    user_coupons (id) {
        id -> BigInt,
        coupon_id -> BigInt,
        user_id -> BigInt,
        status -> Text,
        order_id -> Nullable<BigInt>,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    coupon_usages (id) {
        id -> BigInt,
        user_coupon_id -> BigInt,
        order_id -> BigInt,
        kind -> Text,
        discount_amount -> Numeric,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(user_coupons -> coupons (coupon_id));
diesel::joinable!(coupon_usages -> user_coupons (user_coupon_id));
diesel::allow_tables_to_appear_in_same_query!(coupons, user_coupons, coupon_usages);

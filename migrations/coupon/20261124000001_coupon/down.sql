DROP TABLE coupon_usages;
DROP TABLE user_coupons;
DROP TABLE coupons;

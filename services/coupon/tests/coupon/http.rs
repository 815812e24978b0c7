//! Coupons over HTTP: creation and its rules, issue and its refusals, what a user holds.

use serde_json::{Value, json};
use testkit::clients::CouponClient;

use super::{coupon_body, execute, expire, start};

/// Asserts that `answer` is an error with `status` whose `key` (`code` or `field`) is `value`.
fn assert_error(answer: (u16, Value), status: u16, key: &str, value: &str) {
    let (got, body) = answer;
    assert_eq!(
        (got, body["error"][key].as_str()),
        (status, Some(value)),
        "{body}"
    );
}

/// The error's field, or failing that its message (a 400 names the field in either).
fn named_field(error: &Value) -> String {
    error["error"]["field"]
        .as_str()
        .or(error["error"]["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_coupon_is_created_and_read_back() {
    let s = start().await;
    let (status, created) = s
        .app
        .post(
            "/coupons",
            &json!({
                "name": "  Welcome  ",
                "discount_type": "FIXED",
                "discount_value": 1500,
                "total_quantity": 100,
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["coupon_id"].as_i64().unwrap();
    let expected = json!({
        "coupon_id": id,
        "name": "Welcome",
        "discount_type": "FIXED",
        "discount_value": "1500.00",
        "total_quantity": 100,
        "issued_quantity": 0,
        "expires_at": null,
    });
    assert_eq!(created, expected);
    assert_eq!(s.app.get(&format!("/coupons/{id}")).await, (200, expected));

    let (status, created) = s
        .app
        .post(
            "/coupons",
            &json!({
                "name": "Spring sale",
                "discount_type": "PERCENT",
                "discount_value": "12.5",
                "total_quantity": 1,
                "expires_at": "2099-01-01T09:30:00+02:00",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["discount_value"], "12.50");
    assert_eq!(created["expires_at"], "2099-01-01T07:30:00Z");
    let id = created["coupon_id"].as_i64().unwrap();
    assert_eq!(s.app.get(&format!("/coupons/{id}")).await, (200, created));

    assert_error(s.app.get("/coupons/999999").await, 404, "code", "not_found");
    assert_eq!(s.app.get("/coupons/abc").await.0, 400);
    s.app.stop().await;
}

#[tokio::test]
async fn bad_coupons_are_refused_naming_the_field() {
    let s = start().await;
    let with = |field: &str, value: Value| {
        let mut body = coupon_body("FIXED", "10.00", 5);
        body[field] = value;
        body
    };
    let percent = |value: &str| coupon_body("PERCENT", value, 5);
    for (body, status, field) in [
        (with("name", json!("")), 422, "name"),
        (with("name", json!("   ")), 422, "name"),
        (with("name", json!("x".repeat(101))), 422, "name"),
        (with("discount_type", json!("BOGUS")), 422, "discount_type"),
        (with("discount_type", json!("fixed")), 422, "discount_type"),
        (with("discount_value", json!("0")), 422, "discount_value"),
        (with("discount_value", json!(-5)), 422, "discount_value"),
        (
            with("discount_value", json!("1.001")),
            422,
            "discount_value",
        ),
        (percent("0.99"), 422, "discount_value"),
        (percent("100.01"), 422, "discount_value"),
        (with("total_quantity", json!(0)), 422, "total_quantity"),
        (with("total_quantity", json!(-1)), 422, "total_quantity"),
        (
            with("total_quantity", json!(1_000_001)),
            422,
            "total_quantity",
        ),
        (
            with("total_quantity", json!(5_000_000_000_i64)),
            422,
            "total_quantity",
        ),
        (
            with("expires_at", json!("2001-01-01T00:00:00Z")),
            422,
            "expires_at",
        ),
        (with("expires_at", json!("tomorrow")), 400, "expires_at"),
        (with("discount_value", json!("ten")), 400, "discount_value"),
        (with("total_quantity", json!("5")), 400, "total_quantity"),
        (with("extra", json!(1)), 400, "extra"),
        (
            json!({"discount_type": "FIXED", "discount_value": 1, "total_quantity": 1}),
            400,
            "name",
        ),
    ] {
        let (got, error) = s.app.post("/coupons", &body).await;
        assert_eq!(got, status, "{body}: {error}");
        assert!(named_field(&error).contains(field), "{body}: {error}");
    }
    assert_eq!(
        testkit::effects::count(&s.db, "SELECT count(*) AS count FROM coupons").await,
        0,
        "nothing was created"
    );
    // The limits themselves are allowed.
    for body in [
        with("name", json!("x".repeat(100))),
        percent("1"),
        percent("100"),
        with("total_quantity", json!(1_000_000)),
        with("expires_at", Value::Null),
    ] {
        let (status, created) = s.app.post("/coupons", &body).await;
        assert_eq!(status, 201, "{body}: {created}");
    }
    s.app.stop().await;
}

#[tokio::test]
async fn issuing_gives_one_coupon_per_user_until_sold_out() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let id = coupons
        .create_coupon(&coupon_body("FIXED", "5.00", 2))
        .await;
    let path = format!("/coupons/{id}/issue");
    let (status, issued) = s.app.post(&path, &json!({"user_id": 7})).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(
        issued,
        json!({
            "user_coupon_id": issued["user_coupon_id"].as_i64().unwrap(),
            "coupon_id": id,
            "user_id": 7,
            "status": "AVAILABLE",
            "order_id": null,
        })
    );
    let issued_quantity =
        async || s.app.get(&format!("/coupons/{id}")).await.1["issued_quantity"].clone();

    // The second one fails on the unique key after counting: the count is rolled back too.
    assert_error(
        s.app.post(&path, &json!({"user_id": 7})).await,
        409,
        "code",
        "already_issued",
    );
    assert_eq!(issued_quantity().await, 1);

    coupons.issue(id, 8).await;
    assert_eq!(issued_quantity().await, 2);
    assert_error(
        s.app.post(&path, &json!({"user_id": 9})).await,
        409,
        "code",
        "sold_out",
    );
    assert_error(
        s.app.post(&path, &json!({"user_id": 7})).await,
        409,
        "code",
        "already_issued",
    );
    assert_eq!(issued_quantity().await, 2);

    assert_error(
        s.app
            .post("/coupons/999999/issue", &json!({"user_id": 7}))
            .await,
        404,
        "code",
        "not_found",
    );
    for user_id in [0, -3] {
        assert_error(
            s.app.post(&path, &json!({ "user_id": user_id })).await,
            422,
            "field",
            "user_id",
        );
    }
    assert_error(s.app.post(&path, &json!({})).await, 400, "field", "user_id");
    let count = "SELECT count(*) AS count FROM user_coupons";
    assert_eq!(testkit::effects::count(&s.db, count).await, 2);
    s.app.stop().await;
}

#[tokio::test]
async fn an_expired_coupon_is_not_issued() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let mut body = coupon_body("FIXED", "5.00", 10);
    body["expires_at"] = json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    let id = coupons.create_coupon(&body).await;
    coupons.issue(id, 1).await;
    expire(&s.db, id).await;
    let path = format!("/coupons/{id}/issue");
    assert_error(
        s.app.post(&path, &json!({"user_id": 2})).await,
        409,
        "code",
        "expired",
    );
    assert_eq!(
        s.app.get(&format!("/coupons/{id}")).await.1["issued_quantity"],
        1
    );

    // Expired and sold out: expiry is what the user can do nothing about.
    execute(
        &s.db,
        "UPDATE coupons SET total_quantity = 1 WHERE id = $1",
        id,
    )
    .await;
    assert_error(
        s.app.post(&path, &json!({"user_id": 2})).await,
        409,
        "code",
        "expired",
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_user_sees_each_coupon_and_the_list_of_them() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let fixed = coupons
        .create_coupon(&coupon_body("FIXED", "5.00", 10))
        .await;
    let mut body = coupon_body("PERCENT", "15", 10);
    body["expires_at"] = json!("2099-01-01T00:00:00Z");
    let percent = coupons.create_coupon(&body).await;
    let first = coupons.issue(fixed, 5).await;
    let second = coupons.issue(percent, 5).await;
    coupons.issue(fixed, 6).await;

    let expected_first = json!({
        "user_coupon_id": first,
        "coupon_id": fixed,
        "user_id": 5,
        "status": "AVAILABLE",
        "order_id": null,
    });
    assert_eq!(
        s.app.get(&format!("/user-coupons/{first}")).await,
        (200, expected_first)
    );
    assert_eq!(s.app.get("/user-coupons/999999").await.0, 404);

    let (status, list) = s.app.get("/users/5/coupons").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list,
        json!({
            "user_id": 5,
            "coupons": [
                {
                    "user_coupon_id": second, "coupon_id": percent, "user_id": 5,
                    "status": "AVAILABLE", "order_id": null, "name": "PERCENT 15",
                    "discount_type": "PERCENT", "discount_value": "15.00",
                    "expires_at": "2099-01-01T00:00:00Z",
                },
                {
                    "user_coupon_id": first, "coupon_id": fixed, "user_id": 5,
                    "status": "AVAILABLE", "order_id": null, "name": "FIXED 5.00",
                    "discount_type": "FIXED", "discount_value": "5.00", "expires_at": null,
                },
            ],
            "page": 1,
            "page_size": 20,
            "has_more": false,
        })
    );
    // One per page, each saying whether another follows.
    let page = async |query: &str| {
        let (_, page) = s.app.get(&format!("/users/5/coupons?{query}")).await;
        (
            page["coupons"][0]["user_coupon_id"].as_i64(),
            page["has_more"].as_bool(),
        )
    };
    assert_eq!(page("page=1&page_size=1").await, (Some(second), Some(true)));
    assert_eq!(page("page=2&page_size=1").await, (Some(first), Some(false)));
    let (_, list) = s.app.get("/users/6/coupons").await;
    assert_eq!(list["coupons"].as_array().unwrap().len(), 1);
    assert_eq!(s.app.get("/users/77/coupons").await.1["coupons"], json!([]));

    assert_error(s.app.get("/users/0/coupons").await, 422, "field", "user_id");
    assert_error(
        s.app.get("/users/5/coupons?page_size=101").await,
        422,
        "field",
        "page_size",
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_nul_in_any_text_field_is_a_422_naming_it_and_unknown_paths_answer_json() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    for field in ["name", "discount_type", "discount_value"] {
        let mut body = coupon_body("FIXED", "10.00", 5);
        body[field] = json!("1\u{0}0");
        s.app.assert_refused("/coupons", &body, field).await;
    }
    let id = coupons
        .create_coupon(&coupon_body("FIXED", "10.00", 5))
        .await;
    s.app
        .assert_refused(
            &format!("/coupons/{id}/issue"),
            &json!({"user_id": 1, "note": "\u{0}"}),
            "note",
        )
        .await;
    s.app
        .assert_routing_errors_are_json(&[
            ("GET", "/nope"),
            ("GET", "/coupons/"),
            ("GET", "/users//coupons"),
            ("DELETE", "/coupons"),
        ])
        .await;
    s.app.stop().await;
}

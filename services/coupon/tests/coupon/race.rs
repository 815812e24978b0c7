//! First come, first served under concurrent requests: never beyond the quantity, never twice to
//! one user, and a refused request consumes nothing.

use std::collections::HashMap;

use serde_json::json;
use testkit::clients::CouponClient;
use testkit::service::TestApp;
use tokio::task::JoinSet;

use super::{coupon_body, start};

/// Sends every issue request at once (one per entry of `user_ids`); returns how many got each
/// answer, keyed by status and error code (`"201"`, `"409 sold_out"`, ...).
async fn issue_all(app: &TestApp, coupon_id: i64, user_ids: Vec<i64>) -> HashMap<String, usize> {
    let url = app.url(&format!("/coupons/{coupon_id}/issue"));
    let mut requests = JoinSet::new();
    for user_id in user_ids {
        let (client, url) = (app.client.clone(), url.clone());
        requests.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({ "user_id": user_id }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            match body["error"]["code"].as_str() {
                Some(code) => format!("{status} {code}"),
                None => status.to_string(),
            }
        });
    }
    let mut answers = HashMap::new();
    while let Some(answer) = requests.join_next().await {
        *answers.entry(answer.unwrap()).or_default() += 1;
    }
    answers
}

#[tokio::test]
async fn thirty_users_racing_for_ten_coupons_get_exactly_ten() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let id = coupons
        .create_coupon(&coupon_body("FIXED", "5.00", 10))
        .await;
    let answers = issue_all(&s.app, id, (1..=30).collect()).await;
    assert_eq!(
        answers,
        HashMap::from([("201".to_owned(), 10), ("409 sold_out".to_owned(), 20)])
    );
    assert_eq!(
        s.app.get(&format!("/coupons/{id}")).await.1["issued_quantity"],
        10
    );
    let count = "SELECT count(DISTINCT user_id) AS count FROM user_coupons";
    assert_eq!(testkit::effects::count(&s.db, count).await, 10);
    s.app.stop().await;
}

#[tokio::test]
async fn one_user_racing_ten_times_gets_one_coupon() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let id = coupons
        .create_coupon(&coupon_body("FIXED", "5.00", 100))
        .await;
    let answers = issue_all(&s.app, id, vec![7; 10]).await;
    assert_eq!(
        answers,
        HashMap::from([("201".to_owned(), 1), ("409 already_issued".to_owned(), 9)])
    );
    // The nine refused requests counted one each before failing: all rolled back.
    assert_eq!(
        s.app.get(&format!("/coupons/{id}")).await.1["issued_quantity"],
        1
    );
    assert_eq!(
        s.app.get("/users/7/coupons").await.1["coupons"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.app.stop().await;
}

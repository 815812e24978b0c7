//! `sagactl seed`: demo data through the services' own HTTP APIs, so it obeys every rule a
//! client would.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the services listen.
#[derive(Debug, Clone, clap::Args)]
pub struct Targets {
    #[arg(long, env = "PRODUCT_URL", default_value = "http://127.0.0.1:8082")]
    pub product_url: String,
    #[arg(long, env = "COUPON_URL", default_value = "http://127.0.0.1:8083")]
    pub coupon_url: String,
    #[arg(long, env = "BALANCE_URL", default_value = "http://127.0.0.1:8084")]
    pub balance_url: String,
    #[arg(long, env = "ORDER_URL", default_value = "http://127.0.0.1:8081")]
    pub order_url: String,
}

const PRODUCTS: [(&str, &str, i64); 4] = [
    ("Mechanical keyboard", "89.90", 100),
    ("USB-C cable", "9.99", 1_000),
    ("27-inch monitor", "249.00", 20),
    ("Laptop stand", "39.50", 3),
];

/// Seeds and prints what a user needs to place a first order; returns the created product ids.
pub async fn run(targets: &Targets) -> anyhow::Result<Vec<i64>> {
    let client = reqwest::Client::new();
    let mut product_ids = Vec::new();
    for (name, price, stock) in PRODUCTS {
        let created = post(
            &client,
            &format!("{}/products", targets.product_url),
            json!({"name": name, "price": price, "stock": stock}),
        )
        .await?;
        product_ids.push(
            created["product_id"]
                .as_i64()
                .context("product_id in the answer")?,
        );
    }
    let coupon = post(
        &client,
        &format!("{}/coupons", targets.coupon_url),
        json!({"name": "WELCOME10", "discount_type": "PERCENT", "discount_value": "10", "total_quantity": 100}),
    )
    .await?;
    let coupon_id = coupon["coupon_id"]
        .as_i64()
        .context("coupon_id in the answer")?;
    let mut user_coupons = Vec::new();
    for user_id in 1..=3 {
        post(
            &client,
            &format!("{}/balances/{user_id}/charge", targets.balance_url),
            json!({"amount": "1000.00"}),
        )
        .await?;
        let issued = post(
            &client,
            &format!("{}/coupons/{coupon_id}/issue", targets.coupon_url),
            json!({"user_id": user_id}),
        )
        .await?;
        user_coupons.push((
            user_id,
            issued["user_coupon_id"].as_i64().unwrap_or_default(),
        ));
    }
    println!(
        "seeded: products {product_ids:?}; users 1-3 charged 1000.00; coupon WELCOME10 (10 %) issued as user coupons {user_coupons:?}"
    );
    println!(
        "try:\n  curl -s -XPOST {}/orders -H 'content-type: application/json' \\\n    -d '{{\"user_id\":1,\"items\":[{{\"product_id\":{},\"quantity\":2}}],\"user_coupon_id\":{}}}'",
        targets.order_url, product_ids[0], user_coupons[0].1
    );
    println!("  curl -s '{}/orders/1?wait_ms=5000'", targets.order_url);
    Ok(product_ids)
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url} answered {status}: {answer}");
    }
    Ok(answer)
}

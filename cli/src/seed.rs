//! `sagactl seed`: demo data through the services' own HTTP APIs, so it obeys every rule a
//! client would.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the services are: all through the API gateway, unless one is named on its own.
#[derive(Debug, Clone, clap::Args)]
pub struct Targets {
    /// The API gateway, which every service is reached through by default.
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway_url: String,
    /// The product service itself, e.g. http://127.0.0.1:8082 [default: the gateway]
    #[arg(long, env = "PRODUCT_URL")]
    pub product_url: Option<String>,
    /// The coupon service itself [default: the gateway]
    #[arg(long, env = "COUPON_URL")]
    pub coupon_url: Option<String>,
    /// The balance service itself [default: the gateway]
    #[arg(long, env = "BALANCE_URL")]
    pub balance_url: Option<String>,
    /// The order service itself (only named in the hints printed) [default: the gateway]
    #[arg(long, env = "ORDER_URL")]
    pub order_url: Option<String>,
}

impl Targets {
    /// Every service through the gateway at `url`.
    pub fn gateway(url: String) -> Self {
        Self {
            gateway_url: url,
            product_url: None,
            coupon_url: None,
            balance_url: None,
            order_url: None,
        }
    }

    fn product(&self) -> &str {
        self.product_url.as_deref().unwrap_or(&self.gateway_url)
    }

    fn coupon(&self) -> &str {
        self.coupon_url.as_deref().unwrap_or(&self.gateway_url)
    }

    fn balance(&self) -> &str {
        self.balance_url.as_deref().unwrap_or(&self.gateway_url)
    }

    fn order(&self) -> &str {
        self.order_url.as_deref().unwrap_or(&self.gateway_url)
    }
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
            &format!("{}/products", targets.product()),
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
        &format!("{}/coupons", targets.coupon()),
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
            &format!("{}/balances/{user_id}/charge", targets.balance()),
            json!({"amount": "1000.00"}),
        )
        .await?;
        let issued = post(
            &client,
            &format!("{}/coupons/{coupon_id}/issue", targets.coupon()),
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
        targets.order(),
        product_ids[0],
        user_coupons[0].1
    );
    println!("  curl -s '{}/orders/1?wait_ms=5000'", targets.order());
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

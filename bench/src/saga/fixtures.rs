//! What the orders need, created through the HTTP APIs as a user would: products with ample
//! stock, users charged with ample balance, and a pool of coupons issued to users, refilled
//! before each run so that every coupon order uses a fresh coupon.

use std::collections::VecDeque;

use anyhow::{Context, bail};
use bench::params::SagaParams;
use futures_util::{StreamExt, TryStreamExt, stream};
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use crate::system::Urls;

/// Requests in flight while setting up.
const SETUP_CONCURRENCY: usize = 32;
/// Every product's stock: far more than any run takes.
const STOCK: i64 = 1_000_000_000;
const PRICE: &str = "10.00";
/// Every user's balance: far more than any run spends.
const BALANCE: &str = "1000000000.00";

pub struct Fixtures {
    products: Vec<i64>,
    users: Vec<i64>,
    /// (user, user coupon) not used yet.
    coupons: VecDeque<(i64, i64)>,
    /// Issued so far: coupon `issued / users` goes to user `issued % users`.
    issued: usize,
    coupon_ids: Vec<i64>,
    coupon_percent: f64,
    max_items: usize,
}

/// One order to place.
pub struct OrderPlan {
    pub body: Value,
}

impl Fixtures {
    pub async fn create(
        client: &reqwest::Client,
        urls: &Urls,
        params: &SagaParams,
    ) -> anyhow::Result<Self> {
        let products = stream::iter(0..params.products)
            .map(|index| {
                let body = json!({"name": format!("bench product {index}"), "price": PRICE, "stock": STOCK});
                post(client, format!("{}/products", urls.product), body)
            })
            .buffered(SETUP_CONCURRENCY)
            .map_ok(|created| created["product_id"].as_i64())
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .collect::<Option<Vec<i64>>>()
            .context("POST /products answered without a product_id")?;
        let users: Vec<i64> = (1..=i64::try_from(params.users)?).collect();
        stream::iter(users.clone())
            .map(|user| {
                post(
                    client,
                    format!("{}/balances/{user}/charge", urls.balance),
                    json!({"amount": BALANCE}),
                )
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(Self {
            products,
            users,
            coupons: VecDeque::new(),
            issued: 0,
            coupon_ids: Vec::new(),
            coupon_percent: params.coupon_percent,
            max_items: params.max_items,
        })
    }

    /// Issues coupons until `orders` orders at the coupon share cannot run out.
    pub async fn refill_coupons(
        &mut self,
        client: &reqwest::Client,
        urls: &Urls,
        orders: usize,
    ) -> anyhow::Result<()> {
        let wanted = ((orders as f64) * self.coupon_percent / 100.0).ceil() as usize;
        // A margin: the share is drawn at random per order.
        let wanted = wanted + wanted / 10 + 10;
        if self.coupon_percent == 0.0 || self.coupons.len() >= wanted {
            return Ok(());
        }
        let users = self.users.len();
        let needed = wanted - self.coupons.len();
        let mut pairs = Vec::with_capacity(needed);
        for index in self.issued..self.issued + needed {
            let round = index / users;
            while self.coupon_ids.len() <= round {
                let body = json!({
                    "name": format!("bench coupon {}", self.coupon_ids.len()),
                    "discount_type": "PERCENT",
                    "discount_value": "10",
                    "total_quantity": users,
                });
                let created = post(client, format!("{}/coupons", urls.coupon), body).await?;
                let id = created["coupon_id"]
                    .as_i64()
                    .context("POST /coupons answered without a coupon_id")?;
                self.coupon_ids.push(id);
            }
            pairs.push((self.coupon_ids[round], self.users[index % users]));
        }
        self.issued += needed;
        let issued = stream::iter(pairs)
            .map(|(coupon, user)| async move {
                let issued = post(
                    client,
                    format!("{}/coupons/{coupon}/issue", urls.coupon),
                    json!({"user_id": user}),
                )
                .await?;
                let id = issued["user_coupon_id"]
                    .as_i64()
                    .context("POST /coupons/{id}/issue answered without a user_coupon_id")?;
                anyhow::Ok((user, id))
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        self.coupons.extend(issued);
        Ok(())
    }

    /// A random order every step of which succeeds: existing products with stock, a user with
    /// balance, and at the coupon share a fresh coupon of that user.
    pub fn next_order(&mut self) -> OrderPlan {
        let mut rng = rand::rng();
        let lines = rng.random_range(1..=self.max_items);
        let items: Vec<Value> = self
            .products
            .choose_multiple(&mut rng, lines)
            .map(|product| json!({"product_id": product, "quantity": rng.random_range(1..=2)}))
            .collect();
        let coupon = if rng.random_bool(self.coupon_percent / 100.0) {
            self.coupons.pop_front()
        } else {
            None
        };
        let body = match coupon {
            Some((user, user_coupon)) => {
                json!({"user_id": user, "items": items, "user_coupon_id": user_coupon})
            }
            None => {
                let user = self.users.choose(&mut rng).copied().unwrap_or(1);
                json!({"user_id": user, "items": items})
            }
        };
        OrderPlan { body }
    }
}

/// POSTs `body` and returns the JSON answer; anything but a 2xx is an error.
async fn post(client: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    let response = client
        .post(&url)
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

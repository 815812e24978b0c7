//! One database holding the four services' tables. Their migrations cannot go through diesel's
//! harness into one database (each service numbers its own from the same version), so their
//! SQL is applied once, in one transaction, recorded in a marker table.

use anyhow::Context;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};

const SERVICES_SQL: [(&str, &str); 5] = [
    (
        "order",
        include_str!("../../../migrations/order/20261124000001_order/up.sql"),
    ),
    (
        "order deadlines",
        include_str!("../../../migrations/order/20261206000001_deadlines/up.sql"),
    ),
    (
        "product",
        include_str!("../../../migrations/product/20261124000001_product/up.sql"),
    ),
    (
        "coupon",
        include_str!("../../../migrations/coupon/20261124000001_coupon/up.sql"),
    ),
    (
        "balance",
        include_str!("../../../migrations/balance/20261124000001_balance/up.sql"),
    ),
];

/// Creates the tables unless an earlier start did.
pub async fn apply(url: &str) -> anyhow::Result<()> {
    let mut conn = shared::db::connect(url)
        .await
        .with_context(|| format!("connecting to {}", shared::db::redact(url)))?;
    conn.transaction(async |tx| -> anyhow::Result<()> {
        diesel::sql_query("CREATE TABLE IF NOT EXISTS monolith_schema (service TEXT PRIMARY KEY)")
            .execute(tx)
            .await?;
        // Two monoliths starting at once on one database: the second waits here, then skips.
        diesel::sql_query("LOCK TABLE monolith_schema IN EXCLUSIVE MODE")
            .execute(tx)
            .await?;
        for (service, sql) in SERVICES_SQL {
            let inserted = diesel::sql_query(
                "INSERT INTO monolith_schema (service) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind::<diesel::sql_types::Text, _>(service)
            .execute(tx)
            .await?;
            if inserted == 1 {
                tx.batch_execute(sql)
                    .await
                    .with_context(|| format!("creating the {service} tables"))?;
            }
        }
        Ok(())
    })
    .await
}

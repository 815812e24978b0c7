//! Saga deadlines (docs/design.md#deadlines): every order gets one when it is accepted, and an
//! order still `PENDING` past it is ended here, `FAILED` with code `timeout`, in one transaction
//! with two events: `SagaTimedOut`, on which product, coupon and balance each undo from their
//! own ledger what they did for the order and close its saga, and `OrderFailed`.
//!
//! Every instance sweeps; `FOR UPDATE SKIP LOCKED` gives each due order to one of them, and the
//! transition is conditional on `PENDING` like every other, so an order that completed a moment
//! earlier is left alone, and a `BalanceProcessed` arriving later finds the order `FAILED`.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::db::PgPool;
use shared::envelope::Envelope;
use shared::events::{FailureReason, OrderCommand, OrderFailed, OrderLine, SagaTimedOut};
use shared::outbox::enqueue_event;
use shared::seal::Keyring;
use shared::shutdown::Shutdown;

use crate::domain::OrderStatus;
use crate::repo::{self, OrderRow};
use crate::schema::orders;

/// Orders ended per transaction at most; a sweep that fills one goes on at once.
pub const BATCH: i64 = 100;

/// The failure code of an order ended by its deadline (also the `reason` metric label).
pub const TIMEOUT: &str = "timeout";

/// `SAGA_DEADLINE`: how long a saga may take.
#[derive(Debug, Clone, clap::Args)]
pub struct DeadlineArgs {
    /// How long an order may stay PENDING. Past it the order ends FAILED (code `timeout`) and
    /// product, coupon and balance undo what they did for it. Must exceed the consumer retry
    /// ladder (CONSUMER_RETRY_DELAYS over CONSUMER_MAX_ATTEMPTS), so that a step riding out a
    /// short outage on retries is not given up on before its last retry.
    #[arg(
        id = "saga_deadline",
        long = "saga-deadline",
        env = "SAGA_DEADLINE",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = shared::config::parse_duration
    )]
    pub deadline: Duration,
}

/// The deadline every new order gets, checked against the retry ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaDeadline(Duration);

impl Default for SagaDeadline {
    fn default() -> Self {
        Self(Duration::from_secs(300))
    }
}

impl SagaDeadline {
    /// `after`, refused when zero or within the retry `ladder` of a consumer.
    pub fn new(after: Duration, ladder: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(
            after > ladder,
            "SAGA_DEADLINE ({after:?}) must exceed the retry ladder of CONSUMER_RETRY_DELAYS and \
             CONSUMER_MAX_ATTEMPTS ({ladder:?}): a step still being retried would be given up on"
        );
        Ok(Self(after))
    }

    pub fn duration(self) -> Duration {
        self.0
    }

    /// The deadline of an order accepted now. The sweep compares it with the database's clock;
    /// hosts kept in time by NTP differ by milliseconds against deadlines of minutes.
    pub fn from_now(self) -> DateTime<Utc> {
        let after = chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX);
        Utc::now()
            .checked_add_signed(after)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// How often an instance sweeps: a tenth of the deadline, between 100 ms and 1 s, so that an
    /// order ends at most about that long after its deadline.
    pub fn sweep_every(self) -> Duration {
        (self.0 / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// Ends every order past its deadline, batch by batch, until shutdown.
pub async fn sweep_until_shutdown(
    pool: PgPool,
    keys: Keyring,
    deadline: SagaDeadline,
    mut shutdown: Shutdown,
) {
    loop {
        let swept = match pool.get().await {
            Ok(mut conn) => sweep(&mut conn, &keys).await,
            Err(err) => Err(anyhow::Error::from(err)),
        };
        match swept {
            Ok(ended) if ended == BATCH as usize && !shutdown.is_triggered() => continue,
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "deadline sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(deadline.sweep_every()) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One transaction: up to [`BATCH`] orders past their deadline end `FAILED`, each with its
/// `SagaTimedOut` and `OrderFailed`. Returns how many ended.
pub async fn sweep(conn: &mut AsyncPgConnection, keys: &Keyring) -> anyhow::Result<usize> {
    let ended = conn
        .transaction(async |tx| {
            let due: Vec<OrderRow> = orders::table
                .filter(orders::status.eq(OrderStatus::Pending))
                .filter(orders::deadline_at.le(diesel::dsl::now))
                .order((orders::deadline_at, orders::id))
                .limit(BATCH)
                .for_update()
                .skip_locked()
                .select(OrderRow::as_select())
                .load(tx)
                .await?;
            let ids: Vec<i64> = due.iter().map(|order| order.id).collect();
            let lines = repo::items(tx, &ids).await?;
            let mut ended = Vec::with_capacity(due.len());
            for order in due {
                let items = lines
                    .iter()
                    .filter(|line| line.order_id == order.id)
                    .map(|line| OrderLine {
                        product_id: line.product_id,
                        quantity: line.quantity,
                    })
                    .collect();
                if let Some(accepted_at) = end(tx, keys, &order, items).await? {
                    ended.push(accepted_at);
                }
            }
            anyhow::Ok(ended)
        })
        .await
        .context("ending orders past their deadline")?;
    for accepted_at in &ended {
        crate::metrics::finished("failed", TIMEOUT.to_owned(), *accepted_at);
    }
    Ok(ended.len())
}

/// Ends one locked `PENDING` order; when it was accepted, `None` if it was no longer PENDING.
async fn end(
    tx: &mut AsyncPgConnection,
    keys: &Keyring,
    order: &OrderRow,
    items: Vec<OrderLine>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let reason = FailureReason::new(
        TIMEOUT,
        format!(
            "the saga did not end by the order's deadline, {}",
            order.deadline_at.to_rfc3339()
        ),
    );
    let Some(accepted_at) = repo::fail(tx, order.id, &reason).await? else {
        return Ok(None);
    };
    tracing::warn!(
        order_id = order.id,
        deadline_at = %order.deadline_at,
        "order past its deadline; FAILED, its steps are being undone"
    );
    let timed_out = SagaTimedOut {
        command: OrderCommand {
            order_id: order.id,
            user_id: order.user_id,
            items,
            user_coupon_id: order.user_coupon_id,
        },
        reason: reason.clone(),
    };
    let envelope =
        Envelope::new(&timed_out, Some(order.id))?.with_traceparent(order.traceparent.clone());
    let failed = OrderFailed {
        order_id: order.id,
        user_id: order.user_id,
        reason,
    };
    let then = envelope.follow_up(&failed)?;
    enqueue_event::<SagaTimedOut>(tx, keys, envelope).await?;
    enqueue_event::<OrderFailed>(tx, keys, then).await?;
    Ok(Some(accepted_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_must_exceed_the_retry_ladder() {
        let ladder = Duration::from_secs(156);
        let refused = SagaDeadline::new(ladder, ladder).unwrap_err();
        assert!(refused.to_string().contains("SAGA_DEADLINE"), "{refused}");
        let deadline = SagaDeadline::new(Duration::from_secs(157), ladder).unwrap();
        assert_eq!(deadline.sweep_every(), Duration::from_secs(1));
        assert_eq!(SagaDeadline::default().duration(), Duration::from_secs(300));
        let short = SagaDeadline::new(Duration::from_millis(500), Duration::ZERO).unwrap();
        assert_eq!(short.sweep_every(), Duration::from_millis(100));
    }

    #[test]
    fn a_huge_deadline_saturates_instead_of_overflowing() {
        let forever = SagaDeadline::new(Duration::MAX, Duration::ZERO).unwrap();
        assert_eq!(forever.from_now(), DateTime::<Utc>::MAX_UTC);
    }
}

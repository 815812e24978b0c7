//! The order's side of the choreography: how each order ends.
//!
//! - `BalanceProcessed` → PENDING becomes COMPLETED with its prices and amounts → `OrderCompleted`.
//! - `StockFailed` (nothing was reserved) → PENDING becomes FAILED → `OrderFailed`.
//! - `StockRestored` (the end of every compensation) → PENDING becomes FAILED → `OrderFailed`,
//!   or CANCELLING becomes CANCELLED → `OrderCancelled`.
//!
//! Every transition is conditional on the expected status, so a late or repeated event is a
//! no-op, and nothing is emitted for it.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use shared::consumer::{EventHandler, Handlers};
use shared::envelope::Envelope;
use shared::error::HandlerError;
use shared::events::{
    BalanceProcessed, FailureReason, OrderCancelled, OrderCommand, OrderCompleted, OrderFailed,
    StockFailed, StockRestored,
};
use shared::outbox::enqueue_event;
use shared::seal::Keyring;

use crate::domain::OrderStatus;
use crate::{metrics, repo};

/// Messages applied in one transaction at most, when that many are waiting. Batching is safe
/// here: every handler touches only its own order's rows, which batches lock in order id order.
pub const BATCH: usize = 16;

pub fn handlers(keys: &Keyring) -> Handlers {
    Handlers::new()
        .on::<BalanceProcessed>(Complete { keys: keys.clone() })
        .on::<StockFailed>(FailWithoutCompensation { keys: keys.clone() })
        .on::<StockRestored>(EndCompensation { keys: keys.clone() })
        .batched(BATCH)
}

struct Complete {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<BalanceProcessed> for Complete {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: BalanceProcessed,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        let id = event.command.order_id;
        let completed = repo::complete(
            conn,
            id,
            &event.items,
            event.total_amount,
            event.discount_amount,
            event.paid_amount,
        )
        .await?;
        let Some(accepted_at) = completed else {
            tracing::warn!(
                order_id = id,
                "BalanceProcessed for an order that is not PENDING; ignored"
            );
            return Ok(());
        };
        metrics::finished("completed", "none".into(), accepted_at);
        let next = OrderCompleted {
            order_id: id,
            user_id: event.command.user_id,
            items: event.items,
            total_amount: event.total_amount,
            discount_amount: event.discount_amount,
            paid_amount: event.paid_amount,
        };
        enqueue_event::<OrderCompleted>(conn, keys, envelope.follow_up(&next)?).await?;
        Ok(())
    }
}

struct FailWithoutCompensation {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<StockFailed> for FailWithoutCompensation {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: StockFailed,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        fail(conn, keys, envelope, &event.command, event.reason).await
    }
}

struct EndCompensation {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<StockRestored> for EndCompensation {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: StockRestored,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        let id = event.command.order_id;
        // Locked: the status read here is the one the transition below starts from.
        let Some(order) = repo::lock(conn, id).await? else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "order {id} does not exist"
            )));
        };
        match order.status {
            OrderStatus::Cancelling => {
                // The transition, not the status read, decides: no OrderCancelled for an order
                // this event did not cancel.
                let Some(accepted_at) =
                    repo::transition(conn, id, OrderStatus::Cancelling, OrderStatus::Cancelled)
                        .await?
                else {
                    tracing::warn!(order_id = id, "order left CANCELLING meanwhile; ignored");
                    return Ok(());
                };
                metrics::finished("cancelled", "none".into(), accepted_at);
                let next = OrderCancelled {
                    order_id: id,
                    user_id: order.user_id,
                    refunded_amount: order.paid_amount.unwrap_or(Decimal::ZERO),
                };
                enqueue_event::<OrderCancelled>(conn, keys, envelope.follow_up(&next)?).await?;
                Ok(())
            }
            OrderStatus::Pending => fail(conn, keys, envelope, &event.command, event.reason).await,
            other => {
                tracing::warn!(
                    order_id = id,
                    status = %other,
                    "StockRestored for a settled order; ignored"
                );
                Ok(())
            }
        }
    }
}

async fn fail(
    conn: &mut AsyncPgConnection,
    keys: &Keyring,
    envelope: &Envelope,
    command: &OrderCommand,
    reason: FailureReason,
) -> Result<(), HandlerError> {
    let Some(accepted_at) = repo::fail(conn, command.order_id, &reason).await? else {
        tracing::warn!(
            order_id = command.order_id,
            "failure for an order that is not PENDING; ignored"
        );
        return Ok(());
    };
    metrics::finished("failed", reason.code.clone(), accepted_at);
    let next = OrderFailed {
        order_id: command.order_id,
        user_id: command.user_id,
        reason,
    };
    enqueue_event::<OrderFailed>(conn, keys, envelope.follow_up(&next)?).await?;
    Ok(())
}

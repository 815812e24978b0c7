//! The balance steps of the order saga.
//!
//! - `CouponProcessed` → pay `amount_to_pay` if the balance covers it → `BalanceProcessed`, else
//!   `BalanceProcessingFailed` (a business outcome, not an error: it drives compensation).
//! - `BalanceRestorationRequested` (cancellation of a completed order) → refund exactly what
//!   this order paid → `PaymentRefunded`.
//!
//! Both are idempotent per order through the history's unique (order, kind), below the inbox
//! that already drops redelivered messages.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use shared::consumer::{EventHandler, Handlers};
use shared::envelope::Envelope;
use shared::error::HandlerError;
use shared::events::{
    BalanceProcessed, BalanceProcessingFailed, BalanceRestorationRequested, CouponProcessed,
    FailureReason, PaymentRefunded,
};
use shared::money;
use shared::outbox::enqueue_event;
use shared::seal::Keyring;

use crate::repo;

/// Messages applied in one transaction at most, when that many are waiting.
pub const BATCH: usize = 16;

/// Both steps lock one row, the user's balance; batches lock those in user order.
fn locked_user(envelope: &Envelope) -> i64 {
    envelope.payload["command"]["user_id"]
        .as_i64()
        .unwrap_or_default()
}

pub fn handlers(keys: &Keyring) -> Handlers {
    Handlers::new()
        .on::<CouponProcessed>(Pay { keys: keys.clone() })
        .on::<BalanceRestorationRequested>(Refund { keys: keys.clone() })
        .batched_by(BATCH, locked_user)
}

struct Pay {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<CouponProcessed> for Pay {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: CouponProcessed,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        let order_id = event.command.order_id;
        let user_id = event.command.user_id;
        let amount = money::validate(event.amount_to_pay)
            .map_err(|err| HandlerError::permanent(anyhow::anyhow!("amount_to_pay {err}")))?;
        if repo::order_entry(conn, order_id, repo::LedgerKind::Payment)
            .await?
            .is_some()
        {
            // This order was already paid by an earlier message: its outcome was emitted then.
            return Ok(());
        }
        let paid = if amount.is_zero() {
            Some(repo::balance(conn, user_id).await?)
        } else {
            repo::debit(conn, user_id, amount).await?
        };
        match paid {
            Some(balance_after) => {
                repo::record(
                    conn,
                    user_id,
                    repo::LedgerKind::Payment,
                    amount,
                    Some(order_id),
                    balance_after,
                )
                .await?;
                let next = BalanceProcessed {
                    command: event.command,
                    items: event.items,
                    total_amount: event.total_amount,
                    discount_amount: event.discount_amount,
                    paid_amount: amount,
                };
                enqueue_event::<BalanceProcessed>(conn, keys, envelope.follow_up(&next)?).await?;
            }
            None => {
                let has = repo::balance(conn, user_id).await?;
                let reason = FailureReason::new(
                    "insufficient_balance",
                    format!(
                        "user {user_id} needs {amount} and has {}",
                        money::normalize(has)
                    ),
                );
                let next = BalanceProcessingFailed {
                    command: event.command,
                    items: event.items,
                    total_amount: event.total_amount,
                    discount_amount: event.discount_amount,
                    reason,
                };
                enqueue_event::<BalanceProcessingFailed>(conn, keys, envelope.follow_up(&next)?)
                    .await?;
            }
        }
        Ok(())
    }
}

struct Refund {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<BalanceRestorationRequested> for Refund {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: BalanceRestorationRequested,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        let order_id = event.command.order_id;
        let user_id = event.command.user_id;
        if repo::order_entry(conn, order_id, repo::LedgerKind::Refund)
            .await?
            .is_some()
        {
            return Ok(());
        }
        // Refund what this order actually paid, whatever the request claims.
        let paid = repo::order_entry(conn, order_id, repo::LedgerKind::Payment)
            .await?
            .map_or(Decimal::ZERO, |payment| payment.amount);
        let balance_after = repo::credit(conn, user_id, paid).await?;
        repo::record(
            conn,
            user_id,
            repo::LedgerKind::Refund,
            paid,
            Some(order_id),
            balance_after,
        )
        .await?;
        let next = PaymentRefunded {
            command: event.command,
            items: event.items,
            refunded_amount: money::normalize(paid),
            reason: event.reason,
        };
        enqueue_event::<PaymentRefunded>(conn, keys, envelope.follow_up(&next)?).await?;
        Ok(())
    }
}

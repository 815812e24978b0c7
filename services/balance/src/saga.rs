//! The balance steps of the order saga.
//!
//! - `CouponProcessed` → pay `amount_to_pay` if the balance covers it → `BalanceProcessed`, else
//!   `BalanceProcessingFailed` (a business outcome, not an error: it drives compensation).
//! - `BalanceRestorationRequested` (cancellation of a completed order) → refund exactly what
//!   this order paid → `PaymentRefunded`.
//! - `SagaTimedOut` (the order missed its deadline) → close the saga and refund what this order
//!   paid, if anything, emitting nothing: the order has already ended. A payment arriving after
//!   that is refused ([`shared::closed_sagas`]).
//!
//! Both are idempotent per order through the history's unique (order, kind), below the inbox
//! that already drops redelivered messages.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use shared::consumer::{EventHandler, Handlers};
use shared::envelope::Envelope;
use shared::envelope::SagaEvent;
use shared::error::HandlerError;
use shared::events::{
    BalanceProcessed, BalanceProcessingFailed, BalanceRestorationRequested, CouponProcessed,
    FailureReason, PaymentRefunded, SagaTimedOut,
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
        .on::<SagaTimedOut>(Close)
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
        // The lock a timeout of this order takes: a timeout committed first closed the saga.
        let held = repo::lock(conn, user_id).await?;
        if shared::closed_sagas::is_closed(conn, order_id).await? {
            shared::closed_sagas::refused(crate::NAME, order_id, CouponProcessed::TYPE);
            return Ok(());
        }
        let paid = match held {
            _ if amount.is_zero() => Some(held.unwrap_or(Decimal::ZERO)),
            // A balance created since the lock was not locked: as if it were not there yet.
            None => None,
            Some(_) => repo::debit(conn, user_id, amount).await?,
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
        let Some(paid) = refund(conn, order_id, user_id, true).await? else {
            return Ok(());
        };
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

/// Refunds what this order actually paid (the ledger says, whatever a request claims), once:
/// its REFUND row says it was done. `None` when it was; with `even_unpaid`, an order that paid
/// nothing gets a refund of zero, as a cancellation reports one.
async fn refund(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    user_id: i64,
    even_unpaid: bool,
) -> Result<Option<Decimal>, HandlerError> {
    if repo::order_entry(conn, order_id, repo::LedgerKind::Refund)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let payment = repo::order_entry(conn, order_id, repo::LedgerKind::Payment).await?;
    if payment.is_none() && !even_unpaid {
        return Ok(None);
    }
    let paid = payment.map_or(Decimal::ZERO, |payment| payment.amount);
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
    Ok(Some(paid))
}

struct Close;

#[async_trait]
impl EventHandler<SagaTimedOut> for Close {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        _envelope: &Envelope,
        event: SagaTimedOut,
    ) -> Result<(), HandlerError> {
        let order_id = event.command.order_id;
        // The lock a payment of this order takes: a payment running now commits first and is
        // refunded below, one arriving later finds the saga closed.
        repo::lock(conn, event.command.user_id).await?;
        if !shared::closed_sagas::close(conn, order_id).await? {
            return Ok(());
        }
        let undone = refund(conn, order_id, event.command.user_id, false)
            .await?
            .is_some();
        shared::closed_sagas::applied(crate::NAME, order_id, undone);
        Ok(())
    }
}

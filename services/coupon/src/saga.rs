//! The coupon steps of the order saga.
//!
//! - `StockProcessed` → use the order's coupon if it is the user's, unused and unexpired →
//!   `CouponProcessed` with the discount, else `CouponFailed` (a business outcome, not an error:
//!   it drives compensation). An order without a coupon passes through with no discount.
//! - `BalanceProcessingFailed` (payment refused) and `PaymentRefunded` (order cancelled) → give
//!   back the coupon this order used, if any → `CouponRestored`, so stock is restored next.
//! - `SagaTimedOut` (the order missed its deadline) → close the saga and give back the coupon
//!   this order used, emitting nothing: the order has already ended. A use arriving after that
//!   is refused ([`shared::closed_sagas`]).
//!
//! Both are idempotent per order through the usage ledger's unique (order, kind), below the
//! inbox that already drops redelivered messages.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use rust_decimal::{Decimal, RoundingStrategy};
use shared::consumer::{EventHandler, Handlers};
use shared::envelope::Envelope;
use shared::envelope::SagaEvent;
use shared::error::HandlerError;
use shared::events::{
    BalanceProcessingFailed, CouponFailed, CouponProcessed, CouponRestored, FailureReason,
    OrderCommand, PaymentRefunded, PricedItem, SagaTimedOut, StockProcessed,
};
use shared::money;
use shared::outbox::enqueue_event;
use shared::seal::Keyring;

use crate::repo::{self, CouponStatus, DiscountType, Held, UsageKind};

/// Messages applied in one transaction at most, when that many are waiting.
pub const BATCH: usize = 16;

/// Every step locks at most one row, the order's user coupon; batches lock those in id order.
fn locked_user_coupon(envelope: &Envelope) -> i64 {
    envelope.payload["command"]["user_coupon_id"]
        .as_i64()
        .unwrap_or_default()
}

pub fn handlers(keys: &Keyring) -> Handlers {
    Handlers::new()
        .on::<StockProcessed>(UseCoupon { keys: keys.clone() })
        .on::<BalanceProcessingFailed>(RestoreCoupon { keys: keys.clone() })
        .on::<PaymentRefunded>(RestoreCoupon { keys: keys.clone() })
        .on::<SagaTimedOut>(Close)
        .batched_by(BATCH, locked_user_coupon)
}

/// What coupon terms take off `total`: a FIXED value or a PERCENT of it rounded half away from
/// zero to the cent (not to even: 0.025 is 0.03), never more than `total`. `None` for a type
/// this code does not know.
pub fn discount(discount_type: DiscountType, value: Decimal, total: Decimal) -> Decimal {
    let raw = match discount_type {
        DiscountType::Fixed => value,
        DiscountType::Percent => (total * value / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero),
    };
    money::normalize(raw.min(total))
}

/// Why `held` cannot pay for an order of `user_id`, if it cannot.
pub fn refusal(held: &Held, user_id: i64) -> Option<FailureReason> {
    let id = held.user_coupon.id;
    if held.user_coupon.user_id != user_id {
        return Some(FailureReason::new(
            "coupon_not_owned",
            format!("user coupon {id} belongs to another user"),
        ));
    }
    if held.user_coupon.status != CouponStatus::Available {
        return Some(FailureReason::new(
            "coupon_already_used",
            format!("user coupon {id} was used by another order"),
        ));
    }
    if held.expired {
        let at = held.terms.expires_at.map(|at| at.to_rfc3339());
        return Some(FailureReason::new(
            "coupon_expired",
            format!("user coupon {id} expired at {}", at.unwrap_or_default()),
        ));
    }
    None
}

struct UseCoupon {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<StockProcessed> for UseCoupon {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: StockProcessed,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        let order_id = event.command.order_id;
        let total = money::validate(event.total_amount)
            .map_err(|err| HandlerError::permanent(anyhow::anyhow!("total_amount {err}")))?;
        let Some(user_coupon_id) = event.command.user_coupon_id else {
            // Nothing to take, so nothing to lock: a timeout racing this has nothing to undo.
            if refused_as_closed(conn, order_id).await? {
                return Ok(());
            }
            return processed(conn, keys, envelope, event, total, Decimal::ZERO).await;
        };
        let held = repo::lock_for_order(conn, user_coupon_id).await?;
        // Checked under the lock, so that a concurrent message for this step that committed
        // first is seen here: its outcome was emitted then.
        if repo::usage(conn, order_id, UsageKind::Use).await?.is_some() {
            return Ok(());
        }
        if refused_as_closed(conn, order_id).await? {
            return Ok(());
        }
        let Some(held) = held else {
            let reason = FailureReason::new(
                "coupon_not_found",
                format!("user coupon {user_coupon_id} does not exist"),
            );
            return failed(conn, keys, envelope, event, total, reason).await;
        };
        if let Some(reason) = refusal(&held, event.command.user_id) {
            return failed(conn, keys, envelope, event, total, reason).await;
        }
        let terms = &held.terms;
        let discount = discount(terms.discount_type, terms.discount_value, total);
        // Cannot fail under the lock taken above; the condition states the invariant anyway.
        if !repo::mark_used(conn, user_coupon_id, order_id).await? {
            return Err(HandlerError::transient(anyhow::anyhow!(
                "user coupon {user_coupon_id} changed under its lock"
            )));
        }
        repo::record_usage(conn, user_coupon_id, order_id, UsageKind::Use, discount).await?;
        processed(conn, keys, envelope, event, total, discount).await
    }
}

/// Whether the saga was closed by its deadline, counting the refusal if it was.
async fn refused_as_closed(
    conn: &mut AsyncPgConnection,
    order_id: i64,
) -> Result<bool, HandlerError> {
    let closed = shared::closed_sagas::is_closed(conn, order_id).await?;
    if closed {
        shared::closed_sagas::refused(crate::NAME, order_id, StockProcessed::TYPE);
    }
    Ok(closed)
}

async fn processed(
    conn: &mut AsyncPgConnection,
    keys: &Keyring,
    envelope: &Envelope,
    event: StockProcessed,
    total: Decimal,
    discount: Decimal,
) -> Result<(), HandlerError> {
    let next = CouponProcessed {
        command: event.command,
        items: event.items,
        total_amount: total,
        discount_amount: money::normalize(discount),
        amount_to_pay: money::normalize(total - discount),
    };
    enqueue_event::<CouponProcessed>(conn, keys, envelope.follow_up(&next)?).await?;
    Ok(())
}

async fn failed(
    conn: &mut AsyncPgConnection,
    keys: &Keyring,
    envelope: &Envelope,
    event: StockProcessed,
    total: Decimal,
    reason: FailureReason,
) -> Result<(), HandlerError> {
    let next = CouponFailed {
        command: event.command,
        items: event.items,
        total_amount: total,
        reason,
    };
    enqueue_event::<CouponFailed>(conn, keys, envelope.follow_up(&next)?).await?;
    Ok(())
}

struct RestoreCoupon {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<BalanceProcessingFailed> for RestoreCoupon {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: BalanceProcessingFailed,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        restore(
            conn,
            keys,
            envelope,
            event.command,
            event.items,
            event.reason,
        )
        .await
    }
}

#[async_trait]
impl EventHandler<PaymentRefunded> for RestoreCoupon {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: PaymentRefunded,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        restore(
            conn,
            keys,
            envelope,
            event.command,
            event.items,
            event.reason,
        )
        .await
    }
}

/// Gives back exactly the coupon this order used (the ledger says which, whatever the command
/// claims), then reports it, also when the order used none, so that the compensation goes on.
async fn restore(
    conn: &mut AsyncPgConnection,
    keys: &Keyring,
    envelope: &Envelope,
    command: OrderCommand,
    items: Vec<PricedItem>,
    reason: FailureReason,
) -> Result<(), HandlerError> {
    if undo(conn, command.order_id).await? == Undo::AlreadyRestored {
        // Restored and reported by an earlier message.
        return Ok(());
    }
    let next = CouponRestored {
        command,
        items,
        reason,
    };
    enqueue_event::<CouponRestored>(conn, keys, envelope.follow_up(&next)?).await?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Undo {
    Restored,
    AlreadyRestored,
    NothingUsed,
}

/// Makes the coupon the order's USE row names available again, once: its RESTORE row says so.
async fn undo(conn: &mut AsyncPgConnection, order_id: i64) -> Result<Undo, HandlerError> {
    if repo::usage(conn, order_id, UsageKind::Restore)
        .await?
        .is_some()
    {
        return Ok(Undo::AlreadyRestored);
    }
    let Some(used) = repo::usage(conn, order_id, UsageKind::Use).await? else {
        return Ok(Undo::NothingUsed);
    };
    if !repo::release(conn, used.user_coupon_id, order_id).await? {
        // Nothing in this service makes a used coupon leave its order but this step.
        tracing::warn!(
            order_id,
            user_coupon_id = used.user_coupon_id,
            "the coupon this order used was no longer held by it"
        );
    }
    // A concurrent restoration of this order fails here on the unique (order, kind), rolls
    // back and is retried, then finds this row and does nothing.
    repo::record_usage(
        conn,
        used.user_coupon_id,
        order_id,
        UsageKind::Restore,
        used.discount_amount,
    )
    .await?;
    Ok(Undo::Restored)
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
        // The lock a use of this order's coupon takes: a use running now commits first and is
        // undone below, one arriving later finds the saga closed.
        if let Some(user_coupon_id) = event.command.user_coupon_id {
            repo::lock_for_order(conn, user_coupon_id).await?;
        }
        if !shared::closed_sagas::close(conn, order_id).await? {
            return Ok(());
        }
        let undone = undo(conn, order_id).await? == Undo::Restored;
        shared::closed_sagas::applied(crate::NAME, order_id, undone);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn money(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn discounts_round_half_away_from_zero_and_never_exceed_the_total() {
        let cases = [
            (DiscountType::Fixed, "50.00", "120.00", "50.00"),
            (DiscountType::Fixed, "500", "120.00", "120.00"),
            (DiscountType::Percent, "15", "99.99", "15.00"),
            // Midpoints: banker's rounding would give 0.02 and 0.12.
            (DiscountType::Percent, "10", "0.25", "0.03"),
            (DiscountType::Percent, "50", "0.25", "0.13"),
            (DiscountType::Percent, "100", "0.01", "0.01"),
            (DiscountType::Percent, "1", "0.49", "0.00"),
        ];
        for (kind, value, total, expected) in cases {
            let got = discount(kind, money(value), money(total));
            assert_eq!(got.to_string(), expected, "{kind} {value} of {total}");
        }
    }
}

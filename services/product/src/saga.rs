//! The product steps of the order saga.
//!
//! - `OrderProcessingStarted` → reserve stock for every item, all or nothing, and price the items
//!   → `StockProcessed`, else `StockFailed` naming the product (a business outcome, not an
//!   error: it ends the saga).
//! - `CouponFailed` and `CouponRestored` (a later step failed) → give back exactly what this
//!   order reserved → `StockRestored`.
//! - `SagaTimedOut` (the order missed its deadline) → close the saga and give back what this
//!   order reserved, emitting nothing: the order has already ended. A reservation arriving
//!   after that is refused ([`shared::closed_sagas`]).
//!
//! Both are idempotent per order through the ledger's unique (order, product, kind), below the
//! inbox that already drops redelivered messages. Both lock the products they touch in id order
//! before looking at the ledger, so a concurrent message for the same order waits and then sees
//! what the first one did.

use std::collections::BTreeMap;

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use shared::consumer::{EventHandler, Handlers};
use shared::envelope::Envelope;
use shared::envelope::SagaEvent;
use shared::error::HandlerError;
use shared::events::{
    CouponFailed, CouponRestored, FailureReason, OrderCommand, OrderLine, OrderProcessingStarted,
    PricedItem, SagaTimedOut, StockFailed, StockProcessed, StockRestored,
};
use shared::money;
use shared::outbox::enqueue_event;
use shared::seal::Keyring;

use crate::repo::{self, Product};

pub fn handlers(keys: &Keyring) -> Handlers {
    Handlers::new()
        .on::<OrderProcessingStarted>(Reserve { keys: keys.clone() })
        .on::<CouponFailed>(Restore { keys: keys.clone() })
        .on::<CouponRestored>(Restore { keys: keys.clone() })
        .on::<SagaTimedOut>(Close)
}

struct Reserve {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<OrderProcessingStarted> for Reserve {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: OrderProcessingStarted,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        let order_id = event.command.order_id;
        let wanted = quantities(&event.command.items).map_err(HandlerError::permanent)?;
        let ids: Vec<i64> = wanted.keys().copied().collect();
        // Locks first, then the ledger: a concurrent message for this order waits on the locks
        // and then sees the RESERVE rows the first one committed.
        let products: BTreeMap<i64, Product> = repo::lock(conn, &ids)
            .await?
            .into_iter()
            .map(|product| (product.id, product))
            .collect();
        if !repo::order_movements(conn, order_id, repo::RESERVE)
            .await?
            .is_empty()
        {
            // This order was already reserved by an earlier message: its outcome was emitted then.
            return Ok(());
        }
        if shared::closed_sagas::is_closed(conn, order_id).await? {
            shared::closed_sagas::refused(crate::NAME, order_id, OrderProcessingStarted::TYPE);
            return Ok(());
        }
        let outcome =
            check(&wanted, &products).and_then(|()| price(&event.command.items, &products));
        let (items, total_amount) = match outcome {
            Ok(priced) => priced,
            Err(reason) => {
                let next = StockFailed {
                    command: event.command,
                    reason,
                };
                enqueue_event::<StockFailed>(conn, keys, envelope.follow_up(&next)?).await?;
                return Ok(());
            }
        };
        // `check` proved every quantity fits and the rows are locked, so this cannot refuse;
        // if it does anyway, everything rolls back.
        if let Err(product_id) = repo::reserve(conn, order_id, &wanted).await? {
            return Err(HandlerError::transient(anyhow::anyhow!(
                "stock of product {product_id} changed under its lock"
            )));
        }
        let next = StockProcessed {
            command: event.command,
            items,
            total_amount,
        };
        enqueue_event::<StockProcessed>(conn, keys, envelope.follow_up(&next)?).await?;
        Ok(())
    }
}

/// The quantity wanted per product (an order may name a product on several lines), in id order.
pub fn quantities(lines: &[OrderLine]) -> anyhow::Result<BTreeMap<i64, i64>> {
    anyhow::ensure!(!lines.is_empty(), "the order has no items");
    let mut wanted = BTreeMap::new();
    for line in lines {
        anyhow::ensure!(
            line.quantity > 0,
            "quantity {} of product {} is not positive",
            line.quantity,
            line.product_id
        );
        let total: &mut i64 = wanted.entry(line.product_id).or_default();
        *total = total.saturating_add(i64::from(line.quantity));
    }
    Ok(wanted)
}

/// Every product exists (checked first) and has enough stock; else why not, naming the product.
pub fn check(
    wanted: &BTreeMap<i64, i64>,
    products: &BTreeMap<i64, Product>,
) -> Result<(), FailureReason> {
    if let Some(missing) = wanted.keys().find(|id| !products.contains_key(id)) {
        return Err(FailureReason::new(
            "product_not_found",
            format!("product {missing} does not exist"),
        ));
    }
    for (id, &quantity) in wanted {
        let stock = products.get(id).map_or(0, |product| product.stock);
        if i64::from(stock) < quantity {
            return Err(FailureReason::new(
                "insufficient_stock",
                format!("product {id} has {stock} in stock, {quantity} requested"),
            ));
        }
    }
    Ok(())
}

/// The order's lines at today's prices and their total, or why the total cannot be paid.
pub fn price(
    lines: &[OrderLine],
    products: &BTreeMap<i64, Product>,
) -> Result<(Vec<PricedItem>, Decimal), FailureReason> {
    let too_large = || {
        FailureReason::new(
            "amount_too_large",
            format!("the order total exceeds {}", money::MAX),
        )
    };
    let mut items = Vec::with_capacity(lines.len());
    let mut total = Decimal::ZERO;
    for line in lines {
        let Some(product) = products.get(&line.product_id) else {
            return Err(FailureReason::new(
                "product_not_found",
                format!("product {} does not exist", line.product_id),
            ));
        };
        let unit_price = money::normalize(product.price);
        total = unit_price
            .checked_mul(Decimal::from(line.quantity))
            .and_then(|amount| total.checked_add(amount))
            .ok_or_else(too_large)?;
        items.push(PricedItem {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price,
        });
    }
    // Every later step stores amounts as NUMERIC(14,2): refuse here rather than dead-letter there.
    let total = money::validate(total).map_err(|_| too_large())?;
    Ok((items, total))
}

struct Restore {
    keys: Keyring,
}

#[async_trait]
impl EventHandler<CouponFailed> for Restore {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: CouponFailed,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        restore(conn, keys, envelope, event.command, event.reason).await
    }
}

#[async_trait]
impl EventHandler<CouponRestored> for Restore {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: CouponRestored,
    ) -> Result<(), HandlerError> {
        let keys = &self.keys;
        restore(conn, keys, envelope, event.command, event.reason).await
    }
}

/// Gives back what the order's RESERVE rows say it took, whatever the event's items claim, then
/// emits `StockRestored` (also when nothing was reserved, so that the saga still ends).
async fn restore(
    conn: &mut AsyncPgConnection,
    keys: &Keyring,
    envelope: &Envelope,
    command: OrderCommand,
    reason: FailureReason,
) -> Result<(), HandlerError> {
    if undo(conn, command.order_id).await? == Undo::AlreadyRestored {
        // Already restored by an earlier message, which emitted `StockRestored`.
        return Ok(());
    }
    let next = StockRestored { command, reason };
    enqueue_event::<StockRestored>(conn, keys, envelope.follow_up(&next)?).await?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Undo {
    Restored,
    AlreadyRestored,
    NothingReserved,
}

/// Restores exactly what the order's RESERVE rows took, once: the RESTORE rows say it was done.
async fn undo(conn: &mut AsyncPgConnection, order_id: i64) -> Result<Undo, HandlerError> {
    let reserved = repo::order_movements(conn, order_id, repo::RESERVE).await?;
    if reserved.is_empty() {
        return Ok(Undo::NothingReserved);
    }
    let ids: Vec<i64> = reserved
        .iter()
        .map(|movement| movement.product_id)
        .collect();
    repo::lock(conn, &ids).await?;
    if !repo::order_movements(conn, order_id, repo::RESTORE)
        .await?
        .is_empty()
    {
        return Ok(Undo::AlreadyRestored);
    }
    let changes: Vec<(i64, i32)> = reserved
        .iter()
        .map(|movement| (movement.product_id, movement.delta.saturating_neg()))
        .collect();
    if let Err(product_id) = repo::move_stock(conn, order_id, repo::RESTORE, &changes).await? {
        return Err(HandlerError::permanent(anyhow::anyhow!(
            "restoring the stock of product {product_id} would overflow it"
        )));
    }
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
        // The locks a reservation of this order takes: one running now commits first and is
        // undone below, one arriving later finds the saga closed.
        let ids: Vec<i64> = event
            .command
            .items
            .iter()
            .map(|line| line.product_id)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        repo::lock(conn, &ids).await?;
        if !shared::closed_sagas::close(conn, order_id).await? {
            return Ok(());
        }
        let undone = undo(conn, order_id).await? == Undo::Restored;
        shared::closed_sagas::applied(crate::NAME, order_id, undone);
        Ok(())
    }
}

//! The typed events of the order saga (docs/design.md#events).
//!
//! Every event carries what the next step needs: the original command, the priced items and the
//! amounts once known, and a [`FailureReason`] where relevant. Money is `Decimal`, serialized as
//! a decimal string (`"1200.00"`), never a float.
//!
//! | event | emitted by | consumed by |
//! |---|---|---|
//! | [`OrderProcessingStarted`] | order | product |
//! | [`StockProcessed`] / [`StockFailed`] | product | coupon / order |
//! | [`CouponProcessed`] / [`CouponFailed`] | coupon | balance / product |
//! | [`BalanceProcessed`] / [`BalanceProcessingFailed`] | balance | order / coupon |
//! | [`CouponRestored`] | coupon | product |
//! | [`StockRestored`] | product | order |
//! | [`OrderCompleted`] / [`OrderFailed`] / [`OrderCancelled`] | order | (monitor) |
//! | [`BalanceRestorationRequested`] | order (cancel) | balance |
//! | [`PaymentRefunded`] | balance | coupon |
//! | [`SagaTimedOut`] | order (deadline) | product, coupon, balance |

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::envelope::SagaEvent;

/// One line of the order as the user submitted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: i64,
    pub quantity: i32,
}

/// The order as accepted by the order service; travels with every event of its saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCommand {
    pub order_id: i64,
    pub user_id: i64,
    pub items: Vec<OrderLine>,
    pub user_coupon_id: Option<i64>,
}

/// A line priced by the product service at reservation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedItem {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price: Decimal,
}

/// Why a step failed: a stable machine-readable `code` (bounded, usable as a metric label) and a
/// human-readable `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    pub code: String,
    pub message: String,
}

impl FailureReason {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The services that emit events, by the name they sign with.
pub const ORDER: &str = "order";
pub const PRODUCT: &str = "product";
pub const COUPON: &str = "coupon";
pub const BALANCE: &str = "balance";

macro_rules! saga_event {
    ($name:ident, $routing_key:literal, $producer:ident) => {
        impl SagaEvent for $name {
            const TYPE: &'static str = stringify!($name);
            const ROUTING_KEY: &'static str = $routing_key;
            const PRODUCER: &'static str = $producer;
        }
    };
}

/// Step 1: the order was accepted as `PENDING`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderProcessingStarted {
    pub command: OrderCommand,
}
saga_event!(OrderProcessingStarted, "order.processing-started", ORDER);

/// Step 2 succeeded: stock reserved for every item, items priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockProcessed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
}
saga_event!(StockProcessed, "stock.processed", PRODUCT);

/// Step 2 failed: nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockFailed {
    pub command: OrderCommand,
    pub reason: FailureReason,
}
saga_event!(StockFailed, "stock.failed", PRODUCT);

/// Step 3 succeeded: the coupon (if any) is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponProcessed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub discount_amount: Decimal,
    pub amount_to_pay: Decimal,
}
saga_event!(CouponProcessed, "coupon.processed", COUPON);

/// Step 3 failed: the coupon is untouched; stock must be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponFailed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(CouponFailed, "coupon.failed", COUPON);

/// Step 4 succeeded: the amount was deducted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceProcessed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub discount_amount: Decimal,
    pub paid_amount: Decimal,
}
saga_event!(BalanceProcessed, "balance.processed", BALANCE);

/// Step 4 failed: nothing was deducted; coupon and stock must be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceProcessingFailed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub discount_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(BalanceProcessingFailed, "balance.failed", BALANCE);

/// Compensation: the coupon used by this order (if any) is `AVAILABLE` again; stock is next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponRestored {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub reason: FailureReason,
}
saga_event!(CouponRestored, "coupon.restored", COUPON);

/// Compensation: the stock reserved for this order is back; the order ends next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRestored {
    pub command: OrderCommand,
    pub reason: FailureReason,
}
saga_event!(StockRestored, "stock.restored", PRODUCT);

/// Step 5: the order is `COMPLETED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCompleted {
    pub order_id: i64,
    pub user_id: i64,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub discount_amount: Decimal,
    pub paid_amount: Decimal,
}
saga_event!(OrderCompleted, "order.completed", ORDER);

/// The order is `FAILED` after every earlier step was compensated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailed {
    pub order_id: i64,
    pub user_id: i64,
    pub reason: FailureReason,
}
saga_event!(OrderFailed, "order.failed", ORDER);

/// Cancellation of a `COMPLETED` order (docs/design.md#cancellation-of-a-completed-order):
/// refund the payment first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRestorationRequested {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub paid_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(
    BalanceRestorationRequested,
    "balance.restoration-requested",
    ORDER
);

/// The payment of a cancelled order was refunded; the coupon is next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub refunded_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(PaymentRefunded, "balance.refunded", BALANCE);

/// The cancelled order was fully compensated and is `CANCELLED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: i64,
    pub user_id: i64,
    pub refunded_amount: Decimal,
}
saga_event!(OrderCancelled, "order.cancelled", ORDER);

/// The order missed its deadline and is `FAILED`: every participant undoes, from its own
/// ledger, whatever it did for this order, and refuses any step of it that arrives later
/// (docs/design.md#deadlines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaTimedOut {
    pub command: OrderCommand,
    pub reason: FailureReason,
}
saga_event!(SagaTimedOut, "order.timed-out", ORDER);

/// Every event type with the service that may emit it (the table at the top of this module).
pub const EMITTED_BY: &[(&str, &str)] = &[
    (
        OrderProcessingStarted::TYPE,
        OrderProcessingStarted::PRODUCER,
    ),
    (StockProcessed::TYPE, StockProcessed::PRODUCER),
    (StockFailed::TYPE, StockFailed::PRODUCER),
    (CouponProcessed::TYPE, CouponProcessed::PRODUCER),
    (CouponFailed::TYPE, CouponFailed::PRODUCER),
    (BalanceProcessed::TYPE, BalanceProcessed::PRODUCER),
    (
        BalanceProcessingFailed::TYPE,
        BalanceProcessingFailed::PRODUCER,
    ),
    (CouponRestored::TYPE, CouponRestored::PRODUCER),
    (StockRestored::TYPE, StockRestored::PRODUCER),
    (OrderCompleted::TYPE, OrderCompleted::PRODUCER),
    (OrderFailed::TYPE, OrderFailed::PRODUCER),
    (
        BalanceRestorationRequested::TYPE,
        BalanceRestorationRequested::PRODUCER,
    ),
    (PaymentRefunded::TYPE, PaymentRefunded::PRODUCER),
    (OrderCancelled::TYPE, OrderCancelled::PRODUCER),
    (SagaTimedOut::TYPE, SagaTimedOut::PRODUCER),
];

/// The service allowed to emit `event_type`, if it is a saga event.
pub fn producer_of(event_type: &str) -> Option<&'static str> {
    EMITTED_BY
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, producer)| *producer)
}

/// The services that emit saga events: each holds a signing key.
pub const PRODUCERS: &[&str] = &[ORDER, PRODUCT, COUPON, BALANCE];

/// Every event type name, for topology bindings and tools.
pub const ALL_EVENT_TYPES: &[&str] = &[
    OrderProcessingStarted::TYPE,
    StockProcessed::TYPE,
    StockFailed::TYPE,
    CouponProcessed::TYPE,
    CouponFailed::TYPE,
    BalanceProcessed::TYPE,
    BalanceProcessingFailed::TYPE,
    CouponRestored::TYPE,
    StockRestored::TYPE,
    OrderCompleted::TYPE,
    OrderFailed::TYPE,
    BalanceRestorationRequested::TYPE,
    PaymentRefunded::TYPE,
    OrderCancelled::TYPE,
    SagaTimedOut::TYPE,
];

#[cfg(test)]
mod tests;

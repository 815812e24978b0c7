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

macro_rules! saga_event {
    ($name:ident, $routing_key:literal) => {
        impl SagaEvent for $name {
            const TYPE: &'static str = stringify!($name);
            const ROUTING_KEY: &'static str = $routing_key;
        }
    };
}

/// Step 1: the order was accepted as `PENDING`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderProcessingStarted {
    pub command: OrderCommand,
}
saga_event!(OrderProcessingStarted, "order.processing-started");

/// Step 2 succeeded: stock reserved for every item, items priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockProcessed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
}
saga_event!(StockProcessed, "stock.processed");

/// Step 2 failed: nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockFailed {
    pub command: OrderCommand,
    pub reason: FailureReason,
}
saga_event!(StockFailed, "stock.failed");

/// Step 3 succeeded: the coupon (if any) is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponProcessed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub discount_amount: Decimal,
    pub amount_to_pay: Decimal,
}
saga_event!(CouponProcessed, "coupon.processed");

/// Step 3 failed: the coupon is untouched; stock must be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponFailed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(CouponFailed, "coupon.failed");

/// Step 4 succeeded: the amount was deducted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceProcessed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub discount_amount: Decimal,
    pub paid_amount: Decimal,
}
saga_event!(BalanceProcessed, "balance.processed");

/// Step 4 failed: nothing was deducted; coupon and stock must be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceProcessingFailed {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub total_amount: Decimal,
    pub discount_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(BalanceProcessingFailed, "balance.failed");

/// Compensation: the coupon used by this order (if any) is `AVAILABLE` again; stock is next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponRestored {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub reason: FailureReason,
}
saga_event!(CouponRestored, "coupon.restored");

/// Compensation: the stock reserved for this order is back; the order ends next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRestored {
    pub command: OrderCommand,
    pub reason: FailureReason,
}
saga_event!(StockRestored, "stock.restored");

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
saga_event!(OrderCompleted, "order.completed");

/// The order is `FAILED` after every earlier step was compensated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailed {
    pub order_id: i64,
    pub user_id: i64,
    pub reason: FailureReason,
}
saga_event!(OrderFailed, "order.failed");

/// Cancellation of a `COMPLETED` order (docs/design.md#cancellation-of-a-completed-order):
/// refund the payment first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRestorationRequested {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub paid_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(BalanceRestorationRequested, "balance.restoration-requested");

/// The payment of a cancelled order was refunded; the coupon is next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub command: OrderCommand,
    pub items: Vec<PricedItem>,
    pub refunded_amount: Decimal,
    pub reason: FailureReason,
}
saga_event!(PaymentRefunded, "balance.refunded");

/// The cancelled order was fully compensated and is `CANCELLED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: i64,
    pub user_id: i64,
    pub refunded_amount: Decimal,
}
saga_event!(OrderCancelled, "order.cancelled");

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
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::str::FromStr;

    use super::*;
    use crate::envelope::Envelope;

    fn command() -> OrderCommand {
        OrderCommand {
            order_id: 11,
            user_id: 3,
            items: vec![OrderLine {
                product_id: 5,
                quantity: 2,
            }],
            user_coupon_id: Some(8),
        }
    }

    fn items() -> Vec<PricedItem> {
        vec![PricedItem {
            product_id: 5,
            quantity: 2,
            unit_price: Decimal::from_str("600.10").unwrap(),
        }]
    }

    fn round_trip<E: SagaEvent + PartialEq + std::fmt::Debug>(event: E) {
        let envelope = Envelope::new(&event, Some(11)).unwrap();
        assert_eq!(envelope.event_type, E::TYPE);
        let back = Envelope::from_bytes(&envelope.to_bytes().unwrap()).unwrap();
        assert_eq!(back.decode::<E>().unwrap(), event);
    }

    #[test]
    fn every_event_round_trips() {
        let money = |s: &str| Decimal::from_str(s).unwrap();
        let reason = FailureReason::new("insufficient_balance", "needs 1200.20, has 100.00");
        round_trip(OrderProcessingStarted { command: command() });
        round_trip(StockProcessed {
            command: command(),
            items: items(),
            total_amount: money("1200.20"),
        });
        round_trip(StockFailed {
            command: command(),
            reason: reason.clone(),
        });
        round_trip(CouponProcessed {
            command: command(),
            items: items(),
            total_amount: money("1200.20"),
            discount_amount: money("200.00"),
            amount_to_pay: money("1000.20"),
        });
        round_trip(CouponFailed {
            command: command(),
            items: items(),
            total_amount: money("1200.20"),
            reason: reason.clone(),
        });
        round_trip(BalanceProcessed {
            command: command(),
            items: items(),
            total_amount: money("1200.20"),
            discount_amount: money("200.00"),
            paid_amount: money("1000.20"),
        });
        round_trip(BalanceProcessingFailed {
            command: command(),
            items: items(),
            total_amount: money("1200.20"),
            discount_amount: money("200.00"),
            reason: reason.clone(),
        });
        round_trip(CouponRestored {
            command: command(),
            items: items(),
            reason: reason.clone(),
        });
        round_trip(StockRestored {
            command: command(),
            reason: reason.clone(),
        });
        round_trip(OrderCompleted {
            order_id: 11,
            user_id: 3,
            items: items(),
            total_amount: money("1200.20"),
            discount_amount: money("200.00"),
            paid_amount: money("1000.20"),
        });
        round_trip(OrderFailed {
            order_id: 11,
            user_id: 3,
            reason: reason.clone(),
        });
        round_trip(BalanceRestorationRequested {
            command: command(),
            items: items(),
            paid_amount: money("1000.20"),
            reason: reason.clone(),
        });
        round_trip(PaymentRefunded {
            command: command(),
            items: items(),
            refunded_amount: money("1000.20"),
            reason,
        });
        round_trip(OrderCancelled {
            order_id: 11,
            user_id: 3,
            refunded_amount: money("1000.20"),
        });
    }

    #[test]
    fn money_travels_as_decimal_strings() {
        let event = StockProcessed {
            command: command(),
            items: items(),
            total_amount: Decimal::from_str("1200.20").unwrap(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["total_amount"], serde_json::json!("1200.20"));
        assert_eq!(json["items"][0]["unit_price"], serde_json::json!("600.10"));
    }

    #[test]
    fn type_names_are_unique() {
        let unique: HashSet<_> = ALL_EVENT_TYPES.iter().collect();
        assert_eq!(unique.len(), ALL_EVENT_TYPES.len());
    }
}

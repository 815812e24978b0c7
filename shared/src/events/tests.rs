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
fn every_event_type_has_one_producer() {
    assert_eq!(EMITTED_BY.len(), ALL_EVENT_TYPES.len());
    for event_type in ALL_EVENT_TYPES {
        let producer = producer_of(event_type).expect("a producer");
        assert!(PRODUCERS.contains(&producer), "{event_type}: {producer}");
    }
    assert_eq!(producer_of(CouponProcessed::TYPE), Some(COUPON));
    assert_eq!(producer_of("Forged"), None);
}

#[test]
fn type_names_are_unique() {
    let unique: HashSet<_> = ALL_EVENT_TYPES.iter().collect();
    assert_eq!(unique.len(), ALL_EVENT_TYPES.len());
}

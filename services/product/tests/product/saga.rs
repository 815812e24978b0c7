//! The product saga steps: reservation (all or nothing, once) and restoration (exactly, once).

use super::*;

#[tokio::test]
async fn a_reservation_takes_the_stock_and_prices_the_items() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let laptop = products.create_product("Laptop", "600.10", 5).await;
    let cable = products.create_product("Cable", "0.99", 3).await;
    let event = started(21, &[(laptop, 2), (cable, 1)]);
    publish(&s.amqp, &event, OrderProcessingStarted::ROUTING_KEY).await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockProcessed::TYPE);
    assert_eq!(events[0].causation_id, Some(event.event_id));
    assert_eq!(events[0].saga_id, Some(21));
    let processed: StockProcessed = events[0].decode().unwrap();
    assert_eq!(processed.command, command(21, &[(laptop, 2), (cable, 1)]));
    assert_eq!(
        processed.items,
        vec![
            PricedItem {
                product_id: laptop,
                quantity: 2,
                unit_price: money("600.10"),
            },
            PricedItem {
                product_id: cable,
                quantity: 1,
                unit_price: money("0.99"),
            },
        ]
    );
    assert_eq!(processed.total_amount.to_string(), "1201.19");

    assert_eq!(products.stock(laptop).await, 3);
    assert_eq!(products.stock(cable).await, 2);
    let reserve = "kind = 'RESERVE' AND order_id = 21";
    assert_eq!(movements(&s.db, reserve).await, 2);
    let laptop_row =
        format!("{reserve} AND product_id = {laptop} AND delta = -2 AND stock_after = 3");
    assert_eq!(movements(&s.db, &laptop_row).await, 1);
    let cable_row =
        format!("{reserve} AND product_id = {cable} AND delta = -1 AND stock_after = 2");
    assert_eq!(movements(&s.db, &cable_row).await, 1);
    s.app.stop().await;
}

#[tokio::test]
async fn a_short_item_fails_the_whole_order() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let plenty = products.create_product("Pen", "1.00", 5).await;
    let scarce = products.create_product("Ink", "3.00", 1).await;
    publish(
        &s.amqp,
        &started(22, &[(plenty, 2), (scarce, 2)]),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockFailed::TYPE);
    let failed: StockFailed = events[0].decode().unwrap();
    assert_eq!(failed.reason.code, "insufficient_stock");
    assert!(
        failed.reason.message.contains(&format!("product {scarce}")),
        "{}",
        failed.reason.message
    );
    assert_eq!(failed.command.order_id, 22);
    assert_eq!(products.stock(plenty).await, 5, "all or nothing");
    assert_eq!(products.stock(scarce).await, 1);
    assert_eq!(movements(&s.db, "true").await, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn an_unknown_product_fails_the_order() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let known = products.create_product("Cup", "2.50", 4).await;
    publish(
        &s.amqp,
        &started(23, &[(known, 1), (999, 1)]),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockFailed::TYPE);
    let failed: StockFailed = events[0].decode().unwrap();
    assert_eq!(failed.reason.code, "product_not_found");
    assert!(failed.reason.message.contains("999"), "{:?}", failed.reason);
    assert_eq!(products.stock(known).await, 4);
    assert_eq!(movements(&s.db, "true").await, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn an_order_is_reserved_once_whatever_arrives_twice() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let id = products.create_product("Book", "12.00", 10).await;
    let event = started(24, &[(id, 3)]);
    publish(&s.amqp, &event, OrderProcessingStarted::ROUTING_KEY).await;
    publish(&s.amqp, &event, OrderProcessingStarted::ROUTING_KEY).await; // redelivered
    // A different message for the same order's reservation.
    publish(
        &s.amqp,
        &started(24, &[(id, 3)]),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    wait_for_inbox(&s.db, 2).await;
    let events = outbox_events(&s.db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, StockProcessed::TYPE);
    assert_eq!(products.stock(id).await, 7);
    assert_eq!(movements(&s.db, "kind = 'RESERVE'").await, 1);
    s.app.stop().await;
}

fn coupon_failed(order_id: i64, lines: &[(i64, i32)]) -> Envelope {
    let event = CouponFailed {
        command: command(order_id, lines),
        // What the event claims does not matter: the ledger says what was reserved.
        items: vec![PricedItem {
            product_id: lines[0].0,
            quantity: 99,
            unit_price: money("1.00"),
        }],
        total_amount: money("99.00"),
        reason: FailureReason::new("coupon_expired", "coupon 5 expired"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

#[tokio::test]
async fn a_failed_coupon_gives_back_exactly_the_reservation_once() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let a = products.create_product("Desk", "150.00", 5).await;
    let b = products.create_product("Shelf", "40.00", 4).await;
    let lines = [(b, 1), (a, 2)];
    publish(
        &s.amqp,
        &started(31, &lines),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    wait_for_events(&s.db, 1).await;
    assert_eq!((products.stock(a).await, products.stock(b).await), (3, 3));
    // Stock moved by someone else meanwhile is not the order's to give back.
    assert_eq!(products.adjust_stock(a, -1).await, 2);

    let failure = coupon_failed(31, &lines);
    publish(&s.amqp, &failure, CouponFailed::ROUTING_KEY).await;
    let events = wait_for_events(&s.db, 2).await;
    assert_eq!(events[1].event_type, StockRestored::TYPE);
    assert_eq!(events[1].causation_id, Some(failure.event_id));
    let restored: StockRestored = events[1].decode().unwrap();
    assert_eq!(restored.command, command(31, &lines));
    assert_eq!(
        restored.reason,
        FailureReason::new("coupon_expired", "coupon 5 expired")
    );
    assert_eq!((products.stock(a).await, products.stock(b).await), (4, 4));
    let restore = "kind = 'RESTORE' AND order_id = 31";
    assert_eq!(
        movements(
            &s.db,
            &format!("{restore} AND product_id = {a} AND delta = 2 AND stock_after = 4")
        )
        .await,
        1
    );

    // The same restoration again, and another message asking for it: nothing more.
    publish(&s.amqp, &failure, CouponFailed::ROUTING_KEY).await;
    let again = CouponRestored {
        command: command(31, &lines),
        items: vec![],
        reason: FailureReason::new("insufficient_balance", "late"),
    };
    publish(
        &s.amqp,
        &Envelope::new(&again, Some(31)).unwrap(),
        CouponRestored::ROUTING_KEY,
    )
    .await;
    wait_for_inbox(&s.db, 3).await;
    assert_eq!(outbox_events(&s.db).await.len(), 2, "restored once");
    assert_eq!(movements(&s.db, restore).await, 2);
    assert_eq!((products.stock(a).await, products.stock(b).await), (4, 4));
    s.app.stop().await;
}

#[tokio::test]
async fn restoring_an_order_that_reserved_nothing_still_ends_the_saga() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let id = products.create_product("Rug", "80.00", 2).await;
    publish(
        &s.amqp,
        &coupon_failed(32, &[(id, 1)]),
        CouponFailed::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockRestored::TYPE);
    assert_eq!(products.stock(id).await, 2, "nothing to give back");
    assert_eq!(movements(&s.db, "true").await, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let id = products.create_product("Console", "499.99", 5).await;
    for order_id in 100..120 {
        publish(
            &s.amqp,
            &started(order_id, &[(id, 1)]),
            OrderProcessingStarted::ROUTING_KEY,
        )
        .await;
    }
    let events = wait_for_events(&s.db, 20).await;
    let of_type = |name: &str| events.iter().filter(|e| e.event_type == name).count();
    assert_eq!(of_type(StockProcessed::TYPE), 5);
    assert_eq!(of_type(StockFailed::TYPE), 15);
    assert_eq!(products.stock(id).await, 0);
    assert_eq!(movements(&s.db, "kind = 'RESERVE'").await, 5);
    for failed in events.iter().filter(|e| e.event_type == StockFailed::TYPE) {
        let failed: StockFailed = failed.decode().unwrap();
        assert_eq!(failed.reason.code, "insufficient_stock");
    }
    s.app.stop().await;
}

/// The one statement behind a reservation and a restore keeps every stock within
/// `0..=i32::MAX` and names the first product it refused (the others of that call are moved:
/// its caller rolls back); a change within bounds moves the stock and records its movement.
#[tokio::test]
async fn moving_stock_out_of_its_bounds_is_refused_naming_the_product() {
    use product_service::repo;
    let db = TestDb::with_migrations(vec![product_service::MIGRATIONS]).await;
    let mut conn = db.connect().await;
    let price = Decimal::from_str("1.00").unwrap();
    let small = repo::create(&mut conn, "Small", price, 5).await.unwrap().id;
    let big = repo::create(&mut conn, "Big", price, i32::MAX - 1)
        .await
        .unwrap()
        .id;

    let taken_too_much = repo::move_stock(&mut conn, 40, repo::RESERVE, &[(small, -6)]).await;
    assert_eq!(taken_too_much.unwrap(), Err(small));
    let overflowing = repo::move_stock(&mut conn, 41, repo::RESTORE, &[(small, 1), (big, 2)]).await;
    assert_eq!(overflowing.unwrap(), Err(big));
    let within = repo::move_stock(&mut conn, 42, repo::RESERVE, &[(small, -6), (big, -3)]).await;
    assert_eq!(within.unwrap(), Ok(()));

    assert_eq!(
        repo::find(&mut conn, big).await.unwrap().unwrap().stock,
        i32::MAX - 4
    );
    let emptied =
        format!("order_id = 42 AND product_id = {small} AND delta = -6 AND stock_after = 0");
    assert_eq!(movements(&db, &emptied).await, 1);
    assert_eq!(
        movements(&db, &format!("product_id = {big} AND order_id = 41")).await,
        0
    );
}

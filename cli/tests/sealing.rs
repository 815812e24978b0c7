//! Sealed events against the running system: what an attacker with broker credentials
//! publishes has no effect and is dead-lettered as `unauthenticated`, and nothing readable of
//! a payload sits in an outbox table or on the broker.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::time::Duration;

use lapin::message::Delivery;
use rust_decimal::Decimal;
use shared::amqp::headers;
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{
    BalanceRestorationRequested, CouponProcessed, FailureReason, OrderCommand, OrderLine,
    OrderProcessingStarted, PricedItem, StockProcessed,
};
use shared::seal::Keyring;
use system::{BALANCE, COUPON, MONITOR, ORDER, PRODUCT, System};
use testkit::keys;
use testkit::service::publish_raw;

const DEADLINE: Duration = Duration::from_secs(30);
const VICTIM: i64 = 7;

fn command(order_id: i64, product: i64, user_coupon_id: Option<i64>) -> OrderCommand {
    OrderCommand {
        order_id,
        user_id: VICTIM,
        items: vec![OrderLine {
            product_id: product,
            quantity: 3,
        }],
        user_coupon_id,
    }
}

fn items(product: i64) -> Vec<PricedItem> {
    vec![PricedItem {
        product_id: product,
        quantity: 3,
        unit_price: Decimal::new(23_333, 2),
    }]
}

/// A `CouponProcessed` that would take 700.00 from the victim for an order that does not exist.
fn take_money(order_id: i64, product: i64) -> Envelope {
    let event = CouponProcessed {
        command: command(order_id, product, None),
        items: items(product),
        total_amount: Decimal::new(70_000, 2),
        discount_amount: Decimal::ZERO,
        amount_to_pay: Decimal::new(70_000, 2),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

/// One forged delivery, and the seal check it must fail.
struct Forgery {
    check: &'static str,
    routing_key: &'static str,
    message_id: String,
    envelope: Envelope,
    body: Vec<u8>,
}

impl Forgery {
    fn sealed<E: SagaEvent>(check: &'static str, envelope: Envelope, keys: &Keyring) -> Self {
        let body = keys.seal(&envelope).unwrap();
        Self {
            check,
            routing_key: E::ROUTING_KEY,
            message_id: envelope.event_id.to_string(),
            envelope,
            body,
        }
    }

    async fn publish(&self, s: &System) {
        let kind = &self.envelope.event_type;
        publish_raw(
            &s.amqp,
            self.routing_key,
            &self.message_id,
            kind,
            &self.body,
        )
        .await;
    }
}

/// Every way the balance service could be sent a payment it must not make.
fn payment_forgeries(product: i64) -> Vec<Forgery> {
    let coupon = keys::dev(Some(COUPON));
    let mut unsigned =
        Forgery::sealed::<CouponProcessed>("unsigned", take_money(9_001, product), &coupon);
    unsigned.body = unsigned.envelope.to_bytes().unwrap();
    let mut tampered =
        Forgery::sealed::<CouponProcessed>("bad_signature", take_money(9_005, product), &coupon);
    let text = String::from_utf8(tampered.body.clone()).unwrap();
    let at = text.find("\"ciphertext\":\"").unwrap() + 20;
    tampered.body[at] = if tampered.body[at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let mut republished =
        Forgery::sealed::<CouponProcessed>("id_mismatch", take_money(9_006, product), &coupon);
    republished.message_id = uuid::Uuid::now_v7().to_string();
    let unknown_data = keys::with_data_keys(&keys::fresh_data_key("evil"), Some(COUPON));
    vec![
        unsigned,
        Forgery::sealed::<CouponProcessed>(
            "unknown_key",
            take_money(9_002, product),
            &keys::forger(COUPON, "evil"),
        ),
        Forgery::sealed::<CouponProcessed>(
            "bad_signature",
            take_money(9_003, product),
            &keys::forger(COUPON, "dev"),
        ),
        Forgery::sealed::<CouponProcessed>(
            "wrong_producer",
            take_money(9_004, product),
            &keys::dev(Some(BALANCE)),
        ),
        tampered,
        republished,
        Forgery::sealed::<CouponProcessed>(
            "unknown_key",
            take_money(9_007, product),
            &unknown_data,
        ),
    ]
}

/// A forgery for each other consumer: a genuine key of a service that may not emit the type.
fn other_forgeries(product: i64, user_coupon: i64) -> Vec<(&'static str, Forgery)> {
    let reserve = OrderProcessingStarted {
        command: command(9_101, product, None),
    };
    let use_coupon = StockProcessed {
        command: command(9_102, product, Some(user_coupon)),
        items: items(product),
        total_amount: Decimal::new(69_999, 2),
    };
    let refund = BalanceRestorationRequested {
        command: command(9_103, product, None),
        items: items(product),
        paid_amount: Decimal::new(50_000, 2),
        reason: FailureReason::new("cancelled", "forged"),
    };
    vec![
        (
            PRODUCT,
            Forgery::sealed::<OrderProcessingStarted>(
                "wrong_producer",
                Envelope::new(&reserve, Some(9_101)).unwrap(),
                &keys::dev(Some(BALANCE)),
            ),
        ),
        (
            COUPON,
            Forgery::sealed::<StockProcessed>(
                "wrong_producer",
                Envelope::new(&use_coupon, Some(9_102)).unwrap(),
                &keys::dev(Some(ORDER)),
            ),
        ),
        (
            BALANCE,
            Forgery::sealed::<BalanceRestorationRequested>(
                "wrong_producer",
                Envelope::new(&refund, Some(9_103)).unwrap(),
                &keys::dev(Some(BALANCE)),
            ),
        ),
    ]
}

fn header(delivery: &Delivery, key: &str) -> String {
    headers::get_str(delivery.properties.headers().as_ref(), key).unwrap_or_default()
}

/// Takes `expected` dead letters of `consumer` and checks each was refused as unauthenticated
/// for the named check; returns the checks seen, sorted.
async fn unauthenticated_dead_letters(s: &System, consumer: &str, expected: usize) -> Vec<String> {
    let queue = s.amqp.topology.dead_letter_queue(consumer);
    let letters = s.amqp.take(&queue, expected, DEADLINE).await;
    let mut checks: Vec<String> = letters
        .iter()
        .map(|letter| {
            assert_eq!(
                header(letter, headers::DEAD_LETTER_REASON),
                headers::REASON_UNAUTHENTICATED,
                "{consumer}: {}",
                header(letter, headers::DEAD_LETTER_ERROR)
            );
            let error = header(letter, headers::DEAD_LETTER_ERROR);
            error.split(':').next().unwrap_or_default().to_owned()
        })
        .collect();
    checks.sort();
    checks
}

#[tokio::test]
async fn forged_events_have_no_effect_and_are_dead_lettered_as_unauthenticated() {
    let s = System::start().await;
    let product = s.create_product("keyboard", "233.33", 10).await;
    s.charge(VICTIM, "1000.00").await;
    let coupon = s.coupon_for(VICTIM, "FIXED", "5").await;

    let payments = payment_forgeries(product);
    for forgery in &payments {
        forgery.publish(&s).await;
    }
    let others = other_forgeries(product, coupon);
    for (_, forgery) in &others {
        forgery.publish(&s).await;
    }

    let mut expected: Vec<String> = payments.iter().map(|f| f.check.to_owned()).collect();
    expected.push("wrong_producer".into());
    expected.sort();
    assert_eq!(
        unauthenticated_dead_letters(&s, BALANCE, expected.len()).await,
        expected
    );
    for consumer in [PRODUCT, COUPON] {
        let seen = unauthenticated_dead_letters(&s, consumer, 1).await;
        assert_eq!(seen, ["wrong_producer"], "{consumer}");
    }
    // The monitor reads every event: it records none of these.
    let all = payments.len() + others.len();
    assert_eq!(
        unauthenticated_dead_letters(&s, MONITOR, all).await.len(),
        all
    );

    assert_eq!(s.balance(VICTIM).await, "1000.00", "no money moved");
    assert_eq!(s.stock(product).await, 10, "no stock reserved");
    assert_eq!(s.user_coupon(coupon).await["status"], "AVAILABLE");
    for forgery in payments.iter().chain(others.iter().map(|(_, f)| f)) {
        let saga = forgery.envelope.saga_id.unwrap();
        assert_eq!(s.app(MONITOR).get(&format!("/sagas/{saga}")).await.0, 404);
        assert_eq!(s.app(ORDER).get(&format!("/orders/{saga}")).await.0, 404);
    }
    let balance = s.app(BALANCE);
    let response = balance.client.get(balance.url("/metrics")).send().await;
    let metrics = response.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("consumer_unauthenticated_total")
            && metrics.contains("check=\"wrong_producer\""),
        "{metrics}"
    );

    // The genuine path still works.
    let id = s.place(VICTIM, &[(product, 1)], Some(coupon)).await;
    assert_eq!(s.wait_terminal(id).await["status"], "COMPLETED");
    assert_eq!(s.balance(VICTIM).await, "771.67");
    s.stop().await;
}

#[tokio::test]
async fn no_payload_is_readable_in_an_outbox_table_or_on_the_broker() {
    const USER: i64 = 4_242_424;
    let mut s = System::start().await;
    let product = s.create_product("lamp", "617.28", 10).await;
    s.charge(USER, "9000.00").await;
    let probe = s.amqp.probe("#").await;
    s.stop_relay().await;

    let id = s.place(USER, &[(product, 2)], None).await;
    let secrets = [USER.to_string(), "1234.56".to_owned(), "617.28".to_owned()];
    let stored = testkit::service::outbox_bodies(&s.dbs[ORDER]).await;
    assert_eq!(stored.len(), 1);
    let readable = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        secrets
            .iter()
            .find(|secret| text.contains(secret.as_str()))
            .cloned()
    };
    assert_eq!(readable(&stored[0]), None, "the outbox row is sealed");
    assert_eq!(keys::open(&stored[0]).saga_id, Some(id));

    s.start_relay();
    assert_eq!(s.wait_terminal(id).await["status"], "COMPLETED");
    // Started, stock, coupon, balance, completed: five events, all sealed on the wire.
    for message in s.amqp.take(&probe, 5, DEADLINE).await {
        assert_eq!(readable(&message.data), None, "a message on the broker");
        let headers = format!("{:?}", message.properties.headers());
        assert!(!headers.contains(&secrets[0]), "{headers}");
        let opened = keys::open(&message.data);
        assert_eq!(opened.saga_id, Some(id));
    }
    s.stop().await;
}

#[test]
fn sagactl_keys_generate_writes_a_key_set_each_service_loads_and_never_overwrites_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("keys-{}", testkit::unique_suffix()));
    let generate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
            .args(["keys", "generate", "--label", "t1", "--out"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let first = generate();
    assert!(first.status.success(), "{first:?}");
    let settings = shared::seal::KeySettings {
        dir: Some(dir.display().to_string()),
        ..Default::default()
    };
    let sealed = settings
        .load(Some(COUPON))
        .unwrap()
        .seal(&take_money(1, 1))
        .unwrap();
    let reader = settings.load(Some(MONITOR)).unwrap();
    assert_eq!(reader.signer(), None);
    assert_eq!(reader.open(&sealed).unwrap().signing_key, "coupon-t1");
    for (file, mode) in [
        ("verify.keys", 0o644),
        ("data.keys", 0o600),
        ("order.signing.key", 0o600),
    ] {
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    let before = std::fs::read(dir.join("data.keys")).unwrap();
    let second = generate();
    assert!(!second.status.success(), "{second:?}");
    assert_eq!(std::fs::read(dir.join("data.keys")).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

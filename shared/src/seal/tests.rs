use secrecy::ExposeSecret;
use serde_json::json;

use super::keys::{Generated, generate};
use super::*;
use crate::events::{COUPON, CouponProcessed, ORDER};

fn ring(set: &Generated, producer: Option<&str>, data: &str) -> Keyring {
    let signer = producer.map(|name| {
        let (_, entry) = set
            .signing
            .iter()
            .find(|(service, _)| service == name)
            .expect("producer in the set");
        SigningKey::parse(entry.expose_secret()).expect("signing key")
    });
    Keyring::new(
        signer,
        keys::parse_verifying_keys(&set.verifying).expect("verifying"),
        DataKeys::parse(data).expect("data keys"),
    )
}

fn envelope() -> Envelope {
    let mut envelope = Envelope {
        event_id: uuid::Uuid::now_v7(),
        event_type: "CouponProcessed".into(),
        schema_version: 1,
        saga_id: Some(42),
        causation_id: Some(uuid::Uuid::now_v7()),
        occurred_at: Utc::now(),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        payload: json!({"command": {"user_id": 31337}, "amount_to_pay": "700.00"}),
    };
    envelope.occurred_at = envelope.occurred_at.with_timezone(&Utc);
    envelope
}

fn unauthenticated(result: Result<Opened, Refusal>) -> &'static str {
    match result {
        Err(Refusal::Unauthenticated { check, .. }) => check,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn edit(bytes: &[u8], change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    change(&mut value);
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn a_sealed_event_opens_to_the_same_envelope_and_hides_its_payload() {
    let set = generate(&[ORDER, COUPON], "t").unwrap();
    let data = set.data.expose_secret();
    let coupon = ring(&set, Some(COUPON), data);
    let reader = ring(&set, None, data);
    let sent = envelope();
    let bytes = coupon.seal(&sent).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        !text.contains("31337") && !text.contains("700.00"),
        "{text}"
    );
    let opened = reader.open(&bytes).unwrap();
    assert_eq!(opened.envelope, sent);
    assert_eq!(opened.producer, COUPON);
    let id = sent.event_id.to_string();
    opened
        .admit(Some(&id), Some("CouponProcessed"), Some(COUPON))
        .unwrap();
}

#[test]
fn forgeries_are_refused_by_the_check_they_fail() {
    let set = generate(&[ORDER, COUPON], "t").unwrap();
    let data = set.data.expose_secret();
    let reader = ring(&set, None, data);
    let genuine = ring(&set, Some(COUPON), data).seal(&envelope()).unwrap();

    let plain = envelope().to_bytes().unwrap();
    assert_eq!(unauthenticated(reader.open(&plain)), "unsigned");
    assert!(matches!(
        reader.open(b"\x00garbage"),
        Err(Refusal::Malformed(_))
    ));

    let outsider = generate(&[COUPON], "evil").unwrap();
    let forged = ring(&outsider, Some(COUPON), data)
        .seal(&envelope())
        .unwrap();
    assert_eq!(unauthenticated(reader.open(&forged)), "unknown_key");

    let claims_other = edit(&genuine, |v| v["producer"] = json!("balance"));
    assert_eq!(
        unauthenticated(reader.open(&claims_other)),
        "wrong_producer"
    );

    let mut tampered = genuine.clone();
    let text = String::from_utf8(tampered.clone()).unwrap();
    let at = text.find("\"ciphertext\":\"").unwrap() + 14;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    assert_eq!(unauthenticated(reader.open(&tampered)), "bad_signature");

    let moved = edit(&genuine, |v| v["saga_id"] = json!(43));
    assert_eq!(unauthenticated(reader.open(&moved)), "bad_signature");

    let unknown_data = edit(&genuine, |v| v["data_key"] = json!("other"));
    assert_eq!(unauthenticated(reader.open(&unknown_data)), "bad_signature");
}

#[test]
fn admission_checks_the_delivery_against_what_was_signed() {
    let set = generate(&[ORDER, COUPON], "t").unwrap();
    let data = set.data.expose_secret();
    let sent = envelope();
    let bytes = ring(&set, Some(COUPON), data).seal(&sent).unwrap();
    let opened = ring(&set, None, data).open(&bytes).unwrap();
    let id = sent.event_id.to_string();
    let check = |result: Result<(), Refusal>| match result {
        Err(Refusal::Unauthenticated { check, .. }) => check,
        other => panic!("{other:?}"),
    };
    let other_id = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        check(opened.admit(Some(&other_id), None, Some(COUPON))),
        "id_mismatch"
    );
    assert_eq!(check(opened.admit(None, None, Some(COUPON))), "id_mismatch");
    assert_eq!(
        check(opened.admit(Some(&id), Some("BalanceProcessed"), Some(COUPON))),
        "id_mismatch"
    );
    assert_eq!(
        check(opened.admit(Some(&id), None, Some(ORDER))),
        "wrong_producer"
    );
    assert_eq!(check(opened.admit(Some(&id), None, None)), "wrong_producer");
    assert_eq!(
        crate::events::producer_of(<CouponProcessed as crate::envelope::SagaEvent>::TYPE),
        Some(COUPON)
    );
}

#[test]
fn data_key_rotation_keeps_old_messages_readable_until_the_old_key_is_retired() {
    let old = generate(&[COUPON], "old").unwrap();
    let new = generate(&[COUPON], "new").unwrap();
    let (old_data, new_data) = (old.data.expose_secret(), new.data.expose_secret());
    let before = ring(&old, Some(COUPON), old_data)
        .seal(&envelope())
        .unwrap();

    // Step 1 and 2: the new key is known everywhere, then seals; the old one still opens.
    let both = format!("{new_data}{old_data}");
    let during = ring(&old, None, &both);
    assert!(during.open(&before).is_ok());
    let after = ring(&old, Some(COUPON), &both).seal(&envelope()).unwrap();
    assert_eq!(during.open(&after).unwrap().data_key, "data-new");

    // Step 3: the old key is retired; what it sealed is refused.
    let retired = ring(&old, None, new_data);
    assert_eq!(unauthenticated(retired.open(&before)), "unknown_key");
    assert!(retired.open(&after).is_ok());
}

#[test]
fn signing_key_rotation_accepts_both_keys_until_the_old_one_is_removed() {
    let old = generate(&[COUPON], "old").unwrap();
    let new = generate(&[COUPON], "new").unwrap();
    let data = old.data.expose_secret();
    let both = Keyring::new(
        None,
        keys::parse_verifying_keys(&format!("{}{}", old.verifying, new.verifying)).unwrap(),
        DataKeys::parse(data).unwrap(),
    );
    let by_old = ring(&old, Some(COUPON), data).seal(&envelope()).unwrap();
    let by_new = ring(&new, Some(COUPON), data).seal(&envelope()).unwrap();
    assert_eq!(both.open(&by_old).unwrap().signing_key, "coupon-old");
    assert_eq!(both.open(&by_new).unwrap().signing_key, "coupon-new");
    let retired = ring(&new, None, data);
    assert_eq!(unauthenticated(retired.open(&by_old)), "unknown_key");
    assert!(retired.open(&by_new).is_ok());
}

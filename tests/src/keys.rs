//! The development key set, as the tests seal and open events with it: every service under
//! test runs with it, and a test that plays an upstream service seals as that service.

use shared::envelope::Envelope;
use shared::events::producer_of;
use shared::seal::{KeySettings, Keyring};

/// The keyring of `service` (with its signing key if it is a producer) from the development set.
pub fn dev(service: Option<&str>) -> Keyring {
    KeySettings::dev()
        .load(service)
        .expect("the development key set loads")
}

/// A keyring that reads every event and signs none (a monitor, a tool).
pub fn reader() -> Keyring {
    dev(None)
}

/// `envelope` sealed by the service allowed to emit its type (the order service for test
/// types), as it would come out of that service's outbox.
pub fn seal(envelope: &Envelope) -> Vec<u8> {
    let producer = producer_of(&envelope.event_type).unwrap_or(shared::events::ORDER);
    dev(Some(producer)).seal(envelope).expect("seal")
}

/// Opens sealed `bytes` with the development set (no delivery checks).
pub fn open(bytes: &[u8]) -> Envelope {
    reader().open(bytes).expect("a sealed event").envelope
}

/// A file of the development key set, as every binary has it compiled in.
fn dev_file(file: &str) -> &'static str {
    shared::seal::settings::dev_file(file).expect("a file of the development key set")
}

/// The development verification keys, signing as `signer`'s real key (if any), with `data` as
/// the data keys (the first seals): a keyring in the middle of a data-key rotation, or one
/// that seals under a key nobody holds.
pub fn with_data_keys(data: &str, signer: Option<&str>) -> Keyring {
    use shared::seal::keys::{DataKeys, SigningKey, parse_verifying_keys};
    Keyring::new(
        signer.map(|name| {
            SigningKey::parse(dev_file(&format!("{name}.signing.key"))).expect("signing key")
        }),
        parse_verifying_keys(dev_file("verify.keys")).expect("verification keys"),
        DataKeys::parse(data).expect("data keys"),
    )
}

/// The development data key entry (`data-dev:...`).
pub fn dev_data_keys() -> &'static str {
    dev_file("data.keys")
}

/// A new data key entry no process holds.
pub fn fresh_data_key(label: &str) -> String {
    use secrecy::ExposeSecret;
    let set = shared::seal::keys::generate(&[], label).expect("generate");
    set.data.expose_secret().to_owned()
}

/// A keyring an attacker could hold: a fresh signing key for `producer`, its id carrying
/// `label` (`{producer}-{label}`: with `dev` it reuses the real key's id), and the real data
/// keys.
pub fn forger(producer: &str, label: &str) -> Keyring {
    use secrecy::ExposeSecret;
    use shared::seal::keys::{DataKeys, SigningKey, generate, parse_verifying_keys};
    let set = generate(&[producer], label).expect("generate");
    let entry = set.signing[0].1.expose_secret();
    Keyring::new(
        Some(SigningKey::parse(entry).expect("forged signing key")),
        parse_verifying_keys(&set.verifying).expect("its verification key"),
        DataKeys::parse(dev_file("data.keys")).expect("data keys"),
    )
}

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

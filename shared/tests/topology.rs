//! The consumer topology against the real broker: partition counts that disagree are refused.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use shared::amqp::QueueSpec;
use testkit::{TestAmqp, init_tracing};

#[tokio::test]
async fn a_consumer_with_fewer_partitions_than_the_broker_holds_is_refused() {
    init_tracing();
    let amqp = TestAmqp::new().await;
    let spec = QueueSpec::new(
        "parts",
        vec!["test.#".into()],
        vec![Duration::from_millis(50)],
    )
    .with_partitions(4);
    amqp.declare(&spec).await;
    let topology = &amqp.topology;

    // The same count, or more (the new partitions are declared and join the ring): fine.
    for partitions in [4, 6] {
        let same = spec.clone().with_partitions(partitions);
        topology
            .refuse_extra_partitions(&amqp.connection, &same)
            .await
            .unwrap();
    }
    // Fewer: p2 and p3 would keep their share of the sagas with nobody consuming them.
    let fewer = spec.clone().with_partitions(2);
    let refused = topology
        .refuse_extra_partitions(&amqp.connection, &fewer)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("CONSUMER_PARTITIONS=2") && refused.contains(".parts.p2"),
        "{refused}"
    );
}

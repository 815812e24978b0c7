//! `publish_all` hands a whole batch to the connection at once: the messages still reach the
//! queue in the order given, and each outcome is its own message's, also when some in the
//! middle are refused before sending (a name too long) or returned by the broker (unroutable).

use std::time::Duration;

use lapin::BasicProperties;
use shared::amqp::headers;
use shared::amqp::publish::{Outcome, Outgoing, confirm_channel, publish_all};
use testkit::TestAmqp;

const MESSAGES: usize = 300;

#[tokio::test]
async fn a_pipelined_batch_arrives_in_order_and_each_outcome_is_its_own() {
    testkit::init_tracing();
    let amqp = TestAmqp::new().await;
    let queue = amqp.probe("pipelined").await;
    let exchange = amqp.topology.events_exchange();
    let channel = confirm_channel(&amqp.connection).await.unwrap();
    let user = shared::amqp::user_of(&amqp.url).unwrap();
    let too_long = "k".repeat(300);
    let bodies: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    // Message 100 cannot be sent (its routing key is no AMQP short string); 200 is unroutable.
    let keys: Vec<&str> = (0..MESSAGES)
        .map(|i| match i {
            100 => too_long.as_str(),
            200 => "nowhere",
            _ => "pipelined",
        })
        .collect();
    let outgoing: Vec<Outgoing<'_>> = bodies
        .iter()
        .zip(&keys)
        .map(|(body, key)| Outgoing {
            exchange: &exchange,
            routing_key: key,
            body: body.as_bytes(),
            properties: BasicProperties::default().with_delivery_mode(headers::PERSISTENT),
            user_id: &user,
        })
        .collect();

    let outcomes = publish_all(&channel, &outgoing).await;

    assert_eq!(outcomes.len(), MESSAGES);
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            100 | 200 => assert!(
                matches!(outcome, Outcome::Rejected(_)),
                "message {i}: {outcome:?}"
            ),
            _ => assert_eq!(outcome, &Outcome::Confirmed, "message {i}"),
        }
    }
    let arrived: Vec<String> = amqp
        .take(&queue, MESSAGES - 2, Duration::from_secs(30))
        .await
        .iter()
        .map(|delivery| String::from_utf8_lossy(&delivery.data).into_owned())
        .collect();
    let expected: Vec<&String> = bodies
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 100 && *i != 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(arrived.iter().collect::<Vec<_>>(), expected);
}

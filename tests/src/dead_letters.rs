//! Parking a queued message in its consumer's dead-letter queue, as the consumer itself does
//! when it gives up on one: for tests of what a dead letter does when it is replayed later.

use std::time::Duration;

use chrono::Utc;
use lapin::options::BasicPublishOptions;
use shared::amqp::headers;

use crate::TestAmqp;

impl TestAmqp {
    /// Takes the next message from `consumer`'s queue (waiting up to `deadline`) and publishes
    /// it to the dead-letter exchange with the headers a consumer's dead-lettering adds: the
    /// `reason`, the original queue and the time. Returns the message's AMQP type.
    pub async fn park_next_as_dead_letter(
        &self,
        consumer: &str,
        reason: &str,
        deadline: Duration,
    ) -> String {
        let taken = self.take_from_consumer(consumer, 1, deadline).await;
        let delivery = taken.into_iter().next().expect("one message");
        let queue = self.topology.queue(consumer);
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        headers::set_str(&mut table, headers::DEAD_LETTER_REASON, reason);
        headers::set_str(&mut table, headers::DEAD_LETTER_ERROR, "parked by a test");
        headers::set_str(&mut table, headers::ORIGINAL_QUEUE, &queue);
        headers::set_str(
            &mut table,
            headers::DEAD_LETTERED_AT,
            &Utc::now().to_rfc3339(),
        );
        let exchange = self.topology.dead_letter_exchange();
        let confirm = self
            .channel
            .basic_publish(
                headers::short(&exchange).expect("exchange name"),
                headers::short(&queue).expect("queue name"),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                delivery.properties.clone().with_headers(table),
            )
            .await
            .expect("publish the dead letter");
        confirm.await.expect("confirm the dead letter");
        delivery
            .properties
            .kind()
            .as_ref()
            .map(|kind| kind.to_string())
            .unwrap_or_default()
    }
}

//! An operator's session on the broker, the dead-letter queues it looks at, and the reading
//! operations (list, show, depth; the summary is [`super::summary`]'s). Moving messages is
//! [`super::execute`]'s alone.

use serde::Serialize;

use super::message::{DeadLetter, Filter, parse};
use super::snapshot::{self, Snapshot};
use crate::amqp::{Topology, connect, user_of};
use crate::config::AmqpSettings;
use crate::seal::Keyring;

/// The consumers whose dead-letter queues exist by default: the four services and the monitor
/// (`DLQ_CONSUMERS` of `sagactl` and of the admin API).
pub const DEFAULT_CONSUMERS: &str = "order,product,coupon,balance,monitor";

/// The names in a comma-separated list (`DLQ_CONSUMERS`, the admin API's list parameters),
/// trimmed, empty ones dropped.
pub fn consumers_from(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One dead-letter queue: its depth and the messages that matched.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Listing {
    /// The dead-letter queue's full name.
    pub queue: String,
    /// How many messages it held when it was read.
    pub depth: u32,
    /// Those of them that matched the filter, in queue order.
    pub messages: Vec<DeadLetter>,
}

/// An operator's session on the broker.
pub struct Operator {
    pub(super) connection: lapin::Connection,
    /// The operator's broker user: the `user_id` of replayed copies.
    pub(super) user: String,
    pub(super) topology: Topology,
    consumers: Vec<String>,
    /// Opens the bodies it lists, when the operator holds the keys.
    pub(super) keys: Option<Keyring>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("prefix", &self.topology.prefix())
            .finish()
    }
}

impl Operator {
    /// Connects to the broker `amqp` names; `consumers` are the consumer names whose
    /// dead-letter queues exist under its prefix.
    pub async fn connect(amqp: &AmqpSettings, consumers: Vec<String>) -> anyhow::Result<Self> {
        Ok(Self {
            user: user_of(&amqp.url)?,
            connection: connect(amqp, "sagactl dlq").await?,
            topology: Topology::new(amqp.prefix.as_str()),
            consumers,
            keys: None,
        })
    }

    /// Lists and shows dead letters decrypted with `keys` (the bytes on the queue, and what a
    /// replay sends, stay sealed).
    pub fn with_keys(mut self, keys: Option<Keyring>) -> Self {
        self.keys = keys;
        self
    }

    /// The dead-letter queues `filter` names (consumer names or full queue names), else all.
    pub fn queues(&self, filter: &Filter) -> Vec<String> {
        let names = if filter.queues.is_empty() {
            &self.consumers
        } else {
            &filter.queues
        };
        names
            .iter()
            .map(|name| {
                if name.ends_with(".dlq") {
                    name.clone()
                } else {
                    self.topology.dead_letter_queue(
                        name.strip_prefix(&format!("{}.", self.topology.prefix()))
                            .unwrap_or(name),
                    )
                }
            })
            .collect()
    }

    /// Closes the broker connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "operator done".into()).await;
    }

    /// How many messages wait in `queue` (passively declared: a missing queue is an error).
    pub async fn depth(&self, queue: &str) -> anyhow::Result<u32> {
        snapshot::depth(&self.connection, queue).await
    }

    /// Every selected queue with its depth and its messages matching `filter`; moves nothing.
    pub async fn list(&self, filter: &Filter) -> anyhow::Result<Vec<Listing>> {
        self.read(filter, true).await
    }

    /// As [`Operator::list`]; the bodies are opened only when `open` and the keys are held.
    pub(super) async fn read(&self, filter: &Filter, open: bool) -> anyhow::Result<Vec<Listing>> {
        let keys = self.keys.as_ref().filter(|_| open);
        let mut listings = Vec::new();
        for queue in self.queues(filter) {
            let snapshot = Snapshot::take(&self.connection, &queue).await?;
            let messages = snapshot
                .deliveries
                .iter()
                .map(|d| {
                    let mut letter = parse(&queue, &d.properties, &d.data);
                    if let Some(keys) = keys {
                        letter.open_with(keys, &d.data);
                    }
                    letter
                })
                .filter(|letter| filter.matches(letter))
                .collect();
            listings.push(Listing {
                queue: queue.clone(),
                depth: snapshot.depth,
                messages,
            });
            let kept = snapshot.deliveries.len();
            snapshot.release(&self.connection, kept).await;
        }
        Ok(listings)
    }

    /// The dead letter with `event_id`, wherever it is.
    pub async fn show(&self, event_id: &str) -> anyhow::Result<Option<DeadLetter>> {
        let filter = Filter {
            ids: vec![event_id.to_owned()],
            ..Filter::default()
        };
        Ok(self
            .list(&filter)
            .await?
            .into_iter()
            .flat_map(|l| l.messages)
            .next())
    }
}

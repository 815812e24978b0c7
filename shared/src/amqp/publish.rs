//! Confirmed, mandatory publishing: the only way this code base puts a message on the broker.
//!
//! Every publish sets `mandatory`, because an unroutable message is otherwise confirmed and
//! dropped (docs/traps.md, trap 1); a returned message counts as a failure. Every publish states
//! the publishing identity in `user_id`, replacing whatever the properties carried (a consumer's
//! copy of a delivery carries the relay's): the broker refuses a `user_id` that is not the
//! connection's user ([`super::user`]). A batch is pipelined:
//! all messages are written first, then all confirms awaited, so a batch costs one round trip.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use lapin::{Confirmation, PublisherConfirm};

use super::headers::short;

/// A new channel of `connection` in confirm mode: every publisher of this code base (relay,
/// consumer retries and dead letters, replays) publishes on one of these.
pub async fn confirm_channel(connection: &lapin::Connection) -> anyhow::Result<Channel> {
    use anyhow::Context;
    let channel = connection
        .create_channel()
        .await
        .context("opening channel")?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    Ok(channel)
}

/// How long a batch may wait for its confirms before its outcome counts as unknown.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
    /// The user the publishing connection authenticated as ([`super::user_of`]); it replaces
    /// any `user_id` in `properties`.
    pub user_id: &'a str,
}

/// What the broker said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Routed to at least one queue and confirmed: safe to forget.
    Confirmed,
    /// The broker refused it (nack), or returned it as unroutable, or the name is invalid.
    Rejected(String),
    /// The channel failed before a confirm arrived: the broker may or may not have it.
    Unknown(String),
}

impl Outcome {
    pub fn is_confirmed(&self) -> bool {
        matches!(self, Self::Confirmed)
    }
}

/// Publishes every message pipelined on `channel` (which must be in confirm mode) and returns
/// one outcome per message, in order.
pub async fn publish_all(channel: &Channel, messages: &[Outgoing<'_>]) -> Vec<Outcome> {
    let pending = send_all(channel, messages).await;
    // A broker that stops confirming (a memory or disk alarm blocks publishers) must not hold
    // the caller forever: the relay holds row locks and an open transaction meanwhile.
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    let mut outcomes = Vec::with_capacity(pending.len());
    for sent in pending {
        outcomes.push(match sent {
            Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(confirmation)) => judge(confirmation),
                Ok(Err(err)) => Outcome::Unknown(format!("awaiting confirm: {err}")),
                Err(_) => Outcome::Unknown(format!("no confirm within {CONFIRM_TIMEOUT:?}")),
            },
            Err(outcome) => outcome,
        });
    }
    outcomes
}

/// Publishes one message and waits for its confirm.
pub async fn publish_one(channel: &Channel, message: &Outgoing<'_>) -> Outcome {
    publish_all(channel, std::slice::from_ref(message))
        .await
        .pop()
        .unwrap_or_else(|| Outcome::Unknown("no outcome".into()))
}

/// Hands every message to the connection before waiting for any of them to be written.
///
/// lapin's `basic_publish` queues a message's frames (and takes its confirm's delivery tag) when
/// first polled, then waits until its I/O thread has written them. Awaiting each publish in turn
/// made that thread wake, write one message and wake this task again for every message: two
/// thread switches per message, which were most of the relay's CPU. Polling all of them in
/// order queues the whole batch at once, still in order, and one wake-up writes it.
async fn send_all(
    channel: &Channel,
    messages: &[Outgoing<'_>],
) -> Vec<Result<PublisherConfirm, Outcome>> {
    let mut sends: Vec<_> = messages
        .iter()
        .map(|message| Box::pin(send(channel, message)))
        .collect();
    let mut sent: Vec<Option<Result<PublisherConfirm, Outcome>>> =
        (0..messages.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (send, slot) in sends.iter_mut().zip(sent.iter_mut()) {
            if slot.is_none() {
                match send.as_mut().poll(cx) {
                    std::task::Poll::Ready(result) => *slot = Some(result),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        match waiting {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(()),
        }
    })
    .await;
    sent.into_iter()
        .map(|slot| slot.unwrap_or_else(|| Err(Outcome::Unknown("not sent".into()))))
        .collect()
}

async fn send(channel: &Channel, message: &Outgoing<'_>) -> Result<PublisherConfirm, Outcome> {
    let exchange = short(message.exchange).map_err(|err| Outcome::Rejected(format!("{err:#}")))?;
    let routing_key =
        short(message.routing_key).map_err(|err| Outcome::Rejected(format!("{err:#}")))?;
    let user_id = short(message.user_id).map_err(|err| Outcome::Rejected(format!("{err:#}")))?;
    channel
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            message.body,
            message.properties.clone().with_user_id(user_id),
        )
        .await
        .map_err(|err| Outcome::Unknown(format!("publishing: {err}")))
}

fn judge(confirmation: Confirmation) -> Outcome {
    match confirmation {
        Confirmation::Ack(None) => Outcome::Confirmed,
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Outcome::Rejected(format!(
                "returned by the broker: {} {}",
                returned.reply_code, returned.reply_text
            ))
        }
        Confirmation::Nack(None) => Outcome::Rejected("nacked by the broker".into()),
        Confirmation::NotRequested => Outcome::Unknown("the channel is not in confirm mode".into()),
    }
}

//! The broker user a connection authenticates as, read from its AMQP URL with the parser lapin
//! itself connects with, so the two cannot disagree.
//!
//! Every publish states this user in the `user_id` property ([`super::publish`]). RabbitMQ
//! checks it against the connection and closes the channel on a mismatch, so `user_id` on a
//! message is proof of the identity that published it: the relay for saga events, a consumer
//! for its retry and dead-letter copies, the operator for replays.

use anyhow::anyhow;
use lapin::uri::AMQPUri;

/// The user `url` authenticates as (lapin's default, `guest`, when the URL names none). A URL
/// naming several nodes ([`super::nodes`]) states its credentials once, so every node's
/// connection is the same user and a message's `user_id` does not depend on the node.
pub fn user_of(url: &str) -> anyhow::Result<String> {
    let nodes = super::nodes::nodes(url)?;
    let uri: AMQPUri = nodes[0]
        .url
        .parse()
        .map_err(|err: String| anyhow!("invalid AMQP URL: {err}"))?;
    Ok(uri.authority.userinfo.username)
}

#[cfg(test)]
mod tests {
    use super::user_of;

    #[test]
    fn the_user_is_the_urls_and_guest_when_it_names_none() {
        let named = user_of("amqp://order:secret@rabbitmq:5672/saga").expect("valid");
        assert_eq!(named, "order");
        let encoded = user_of("amqp://ops%2Dteam:pw@localhost/%2f").expect("valid");
        assert_eq!(encoded, "ops-team");
        assert_eq!(user_of("amqp://localhost").expect("valid"), "guest");
        let cluster = user_of("amqp://relay:pw@h1:5681,h2:5682,h3:5683/saga").expect("valid");
        assert_eq!(cluster, "relay");
        assert!(user_of("http://nope").is_err());
    }
}

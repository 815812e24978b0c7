//! The broker nodes one `AMQP_URL` names.
//!
//! A RabbitMQ cluster is reached through any of its nodes. `AMQP_URL` names them in one URL
//! with several hosts, as libpq does for PostgreSQL:
//! `amqp://user:password@host1:5672,host2:5672,host3:5672/vhost`. Every node shares the
//! scheme, the credentials, the vhost and the query, so every connection authenticates as the
//! same user (the `user_id` each publish states, [`super::user_of`]) and takes the same TLS
//! settings whatever node it reaches. A URL with one host is used exactly as written.
//!
//! [`super::connect`] tries the nodes in turn, starting at a different one on every call
//! ([`Rotation`]), so the connections of a process, and of many processes, spread over the
//! cluster, and a reconnect after a node died lands on a live one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail};
use lapin::uri::AMQPUri;

use crate::db::redact;

/// One node of `AMQP_URL`: the URL lapin connects with, and its `host:port` for messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    /// A complete single-host URL (holds the password: never log it, see [`redact`]).
    pub url: String,
    /// The host (and port, if the URL names one) as written.
    pub host: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("url", &redact(&self.url))
            .field("host", &self.host)
            .finish()
    }
}

/// The nodes `url` names, in the order written; each one a valid AMQP URL. Errors show the URL
/// with its password redacted.
pub fn nodes(url: &str) -> anyhow::Result<Vec<Node>> {
    let Some(scheme_end) = url.find("://") else {
        // Without a scheme nothing marks where a password ends: show none of it.
        bail!("invalid AMQP URL: no scheme (amqp:// or amqps://)");
    };
    let (scheme, rest) = (&url[..scheme_end], &url[scheme_end + 3..]);
    // The authority ends at the path or the query: a `/`, `?` or `#` inside a password must be
    // percent-encoded, as the URL parser lapin uses requires anyway.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The last `@` ends the credentials: a raw `@` or `,` in a password stays in them.
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let single = !hosts.contains(',');
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            bail!("AMQP URL {} names an empty host", redact(url));
        }
        let node_url = if single {
            url.to_owned()
        } else {
            format!("{scheme}://{userinfo}{host}{tail}")
        };
        node_url
            .parse::<AMQPUri>()
            .map_err(|err| anyhow!("invalid AMQP URL {}: {err}", redact(&node_url)))?;
        nodes.push(Node {
            url: node_url,
            host: host.to_owned(),
        });
    }
    Ok(nodes)
}

/// Where the next connect starts in a list of nodes: one counter per process, starting at a
/// random value so that processes started together do not all begin with the first node, and
/// advancing on every connect so that one process's connections spread over the nodes.
pub struct Rotation;

impl Rotation {
    /// The index of the node the next connect tries first, among `count`.
    pub fn next(count: usize) -> usize {
        static NEXT: OnceLock<AtomicUsize> = OnceLock::new();
        let next = NEXT.get_or_init(|| AtomicUsize::new(rand::random::<u16>().into()));
        next.fetch_add(1, Ordering::Relaxed) % count.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(url: &str) -> Vec<String> {
        nodes(url)
            .unwrap()
            .into_iter()
            .map(|node| node.url)
            .collect()
    }

    #[test]
    fn a_url_with_one_host_is_used_as_written() {
        let url = "amqps://u:p%2Cw@rabbit.example:5671/saga?heartbeat=10";
        assert_eq!(urls(url), [url]);
        assert_eq!(nodes(url).unwrap()[0].host, "rabbit.example:5671");
        assert_eq!(urls("amqp://localhost"), ["amqp://localhost"]);
    }

    #[test]
    fn several_hosts_share_scheme_credentials_vhost_and_query() {
        let url = "amqp://order:s@cr,et@h1:5681,h2:5682, h3/saga?heartbeat=5";
        assert_eq!(
            urls(url),
            [
                "amqp://order:s@cr,et@h1:5681/saga?heartbeat=5",
                "amqp://order:s@cr,et@h2:5682/saga?heartbeat=5",
                "amqp://order:s@cr,et@h3/saga?heartbeat=5",
            ]
        );
        let hosts: Vec<_> = nodes(url).unwrap().into_iter().map(|n| n.host).collect();
        assert_eq!(hosts, ["h1:5681", "h2:5682", "h3"]);
        assert_eq!(
            urls("amqp://127.0.0.1:1,127.0.0.1:2"),
            ["amqp://127.0.0.1:1", "amqp://127.0.0.1:2"]
        );
    }

    #[test]
    fn bad_lists_are_refused_without_showing_the_password() {
        for bad in [
            "amqp://u:hunter2@h1,,h2/v",
            "amqp://u:hunter2@h1,/v",
            "amqp://u:hunter2@h1:5672,h2:port/v",
            "u:hunter2@h1,h2",
        ] {
            let err = nodes(bad).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("AMQP URL"), "{err}");
        }
        let node = &nodes("amqp://u:hunter2@h1,h2/v").unwrap()[1];
        assert!(!format!("{node:?}").contains("hunter2"));
    }

    #[test]
    fn the_rotation_visits_every_node() {
        // nextest runs each test in a process of its own: nothing else draws in between.
        let mut seen: Vec<usize> = (0..3).map(|_| Rotation::next(3)).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(Rotation::next(1), 0);
    }
}

//! Several broker nodes in one `AMQP_URL`: the one connect function reaches a live node when
//! another is dead, and says which nodes it tried when none answers. The dead node is a port
//! nobody listens on; the live one is the machine's broker (`AMQP_URL`). The failover of a real
//! three-node cluster under load is `cli/tests/cluster.rs`. Publishing a batch: `publishing`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "amqp_nodes/publishing.rs"]
mod publishing;

use std::net::TcpListener;

use shared::amqp::{connect, nodes, user_of};
use shared::config::{AmqpSettings, AmqpTls};

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
}

/// `url` (one node) with `hosts` put before its own host, credentials and vhost kept.
fn with_hosts_before(url: &str, hosts: &[String]) -> String {
    let node = &nodes::nodes(url).unwrap()[0];
    let mut list = hosts.to_vec();
    list.push(node.host.clone());
    url.replacen(&node.host, &list.join(","), 1)
}

fn settings(url: String) -> AmqpSettings {
    AmqpSettings {
        url,
        prefix: format!("n{}", testkit::unique_suffix()),
        tls: AmqpTls::from_env(),
    }
}

#[tokio::test]
async fn with_the_first_node_dead_every_connect_reaches_the_live_one() {
    testkit::init_tracing();
    let live = testkit::amqp_url();
    let url = with_hosts_before(&live, &[format!("127.0.0.1:{}", dead_port())]);
    assert_eq!(nodes::nodes(&url).unwrap().len(), 2);
    assert_eq!(user_of(&url).unwrap(), user_of(&live).unwrap());
    let amqp = settings(url);
    // Each connect starts at the next node: among four, two start at the dead one.
    for attempt in 0..4 {
        let connection = connect(&amqp, &format!("failover {attempt}"))
            .await
            .unwrap_or_else(|err| panic!("attempt {attempt}: {err:#}"));
        let channel = connection.create_channel().await.unwrap();
        channel.close(200, "done".into()).await.unwrap();
        connection.close(200, "done".into()).await.unwrap();
    }
}

#[tokio::test]
async fn when_no_node_answers_the_error_names_each_and_hides_the_password() {
    let dead: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", dead_port()))
        .collect();
    let url = format!("amqp://guest:hunter2@{}/%2f", dead.join(","));
    let err = match connect(&settings(url), "nowhere").await {
        Ok(_) => panic!("connected to a dead port"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("no node answered"), "{err}");
    for host in &dead {
        assert!(err.contains(host.as_str()), "{host} missing from {err}");
    }
    assert!(!err.contains("hunter2"), "{err}");
}

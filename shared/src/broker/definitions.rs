//! The definitions document: the vhost, one user per identity with its password hash, their
//! permissions in the vhost, and the two shared exchanges. The same JSON that RabbitMQ's
//! `load_definitions` reads at boot, `rabbitmqctl import_definitions` and the management API's
//! `POST /api/definitions` take, and `GET /api/definitions` exports.
//!
//! The shared exchanges are declared here rather than by the relay or the services, so that no
//! runtime identity needs configure permission on them (which would let it delete them). The
//! per-consumer queues and retry exchanges are not: each consumer declares its own.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::passwords::{self, HASHING_ALGORITHM};
use super::permissions::permissions;
use super::{Passwords, Plan};
use crate::amqp::Topology;

/// The document, in RabbitMQ's field names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Definitions {
    pub users: Vec<User>,
    pub vhosts: Vec<Vhost>,
    pub permissions: Vec<Permission>,
    pub exchanges: Vec<Exchange>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vhost {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Permission {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exchange {
    pub name: String,
    pub vhost: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: serde_json::Value,
}

impl Definitions {
    /// The document for `plan`, hashing each identity's password from `passwords`.
    pub fn build(plan: &Plan, passwords: &Passwords) -> anyhow::Result<Self> {
        let mut users = Vec::new();
        let mut grants = Vec::new();
        for role in plan.roles() {
            let user = plan.user(&role);
            users.push(User {
                name: user.clone(),
                password_hash: passwords::hash(passwords.get(&role)?),
                hashing_algorithm: HASHING_ALGORITHM.into(),
                tags: role.tags().into(),
            });
            let allowed = permissions(&plan.prefix, &role);
            grants.push(Permission {
                user,
                vhost: plan.vhost.clone(),
                configure: allowed.configure,
                write: allowed.write,
                read: allowed.read,
            });
        }
        let topology = Topology::new(plan.prefix.clone());
        let exchange = |name: String, kind: &str| Exchange {
            name,
            vhost: plan.vhost.clone(),
            kind: kind.into(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: json!({}),
        };
        Ok(Self {
            users,
            vhosts: vec![Vhost {
                name: plan.vhost.clone(),
            }],
            permissions: grants,
            exchanges: vec![
                exchange(topology.events_exchange(), "topic"),
                exchange(topology.dead_letter_exchange(), "direct"),
            ],
        })
    }

    /// The document as pretty JSON with a trailing newline (what a committed file holds).
    pub fn to_pretty_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}

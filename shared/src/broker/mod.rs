//! Least-privilege broker identities: who connects to RabbitMQ, and what each may do there.
//!
//! One user per identity, all in one vhost: the outbox relay, one per consumer (the four
//! services and the monitor), and the operator (`sagactl dlq`, the monitor's admin API). Each
//! holds only the permissions its runtime uses ([`permissions`]); the table with its reasons is
//! in docs/messaging.md, "Broker identities".
//!
//! - [`permissions`]: the identities and their configure/write/read regular expressions.
//! - [`passwords`]: where each identity's password comes from, and RabbitMQ's password hash.
//! - [`definitions`]: the definitions document (`load_definitions`, `POST /api/definitions`).
//! - [`management`]: the management HTTP API client that applies it ([`setup`]).

pub mod definitions;
pub mod management;
pub mod passwords;
pub mod permissions;

pub use definitions::Definitions;
pub use management::Management;
pub use passwords::Passwords;
pub use permissions::{Permissions, Role};

/// What to set up: a vhost, the names' prefix there, and the identities.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The vhost every identity is confined to.
    pub vhost: String,
    /// The exchange and queue name prefix (`AMQP_PREFIX`).
    pub prefix: String,
    /// Put before every user name, so several deployments (or tests) can share one broker's
    /// global user list.
    pub user_prefix: String,
    /// The consumers, each an identity of its own (`DLQ_CONSUMERS`).
    pub consumers: Vec<String>,
    /// Also an administrator of the vhost (`admin`): a broker that loads definitions at boot
    /// creates no default user, and the management UI needs one.
    pub with_admin: bool,
}

impl Plan {
    /// The identities, in a stable order: relay, the consumers, operator, then admin if asked.
    pub fn roles(&self) -> Vec<Role> {
        let mut roles = vec![Role::Relay];
        roles.extend(self.consumers.iter().cloned().map(Role::Consumer));
        roles.push(Role::Operator);
        if self.with_admin {
            roles.push(Role::Admin);
        }
        roles
    }

    /// The broker user name of `role`.
    pub fn user(&self, role: &Role) -> String {
        format!("{}{}", self.user_prefix, role.name())
    }

    /// The AMQP URL `role` connects with, on `host_port`.
    pub fn amqp_url(&self, role: &Role, password: &str, host_port: &str) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        format!(
            "amqp://{}:{}@{host_port}/{}",
            utf8_percent_encode(&self.user(role), NON_ALPHANUMERIC),
            utf8_percent_encode(password, NON_ALPHANUMERIC),
            utf8_percent_encode(&self.vhost, NON_ALPHANUMERIC),
        )
    }
}

/// Applies `plan` with `passwords` through `management`: creates (or updates) the vhost, the
/// users with their password hashes, their permissions and the shared exchanges. Idempotent;
/// re-running it with new passwords rotates them.
pub async fn setup(
    plan: &Plan,
    passwords: &Passwords,
    management: &Management,
) -> anyhow::Result<Definitions> {
    let definitions = Definitions::build(plan, passwords)?;
    management.import(&definitions).await?;
    Ok(definitions)
}

#[cfg(test)]
mod tests;

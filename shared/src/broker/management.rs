//! The RabbitMQ management HTTP API, as much of it as the setup and its tests use: import a
//! definitions document, grant permissions, delete a vhost or a user.
//!
//! The management API rather than `rabbitmqctl`: it works from anywhere the operator can reach
//! port 15672 (a laptop, a CI job, a hosted broker), where `rabbitmqctl` needs a shell on the
//! broker's host and its Erlang cookie. Plain HTTP only for now (no TLS client in this build).

use anyhow::{Context, bail};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use super::{Definitions, Permissions};

/// A management API endpoint and the administrator credentials it is used with.
#[derive(Clone)]
pub struct Management {
    base: String,
    user: String,
    password: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("base", &self.base)
            .field("user", &self.user)
            .finish()
    }
}

impl Management {
    /// The API at `base` (e.g. `http://127.0.0.1:15672`), as `user`.
    pub fn new(base: &str, user: &str, password: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// Imports `definitions` (users, vhost, permissions, exchanges); existing ones are updated.
    pub async fn import(&self, definitions: &Definitions) -> anyhow::Result<()> {
        let body = serde_json::to_value(definitions)?;
        self.send(reqwest::Method::POST, "/api/definitions", Some(body))
            .await
            .context("importing the broker definitions")
    }

    /// Grants `user` `permissions` in `vhost`.
    pub async fn grant(
        &self,
        vhost: &str,
        user: &str,
        permissions: &Permissions,
    ) -> anyhow::Result<()> {
        let path = format!("/api/permissions/{}/{}", segment(vhost), segment(user));
        let body = json!({
            "configure": permissions.configure,
            "write": permissions.write,
            "read": permissions.read,
        });
        self.send(reqwest::Method::PUT, &path, Some(body)).await
    }

    /// Creates `vhost` (nothing happens if it exists).
    pub async fn create_vhost(&self, vhost: &str) -> anyhow::Result<()> {
        let path = format!("/api/vhosts/{}", segment(vhost));
        self.send(reqwest::Method::PUT, &path, Some(json!({})))
            .await
    }

    /// Deletes `vhost` with everything in it.
    pub async fn delete_vhost(&self, vhost: &str) -> anyhow::Result<()> {
        let path = format!("/api/vhosts/{}", segment(vhost));
        self.send(reqwest::Method::DELETE, &path, None).await
    }

    /// Deletes the user `user`.
    pub async fn delete_user(&self, user: &str) -> anyhow::Result<()> {
        let path = format!("/api/users/{}", segment(user));
        self.send(reqwest::Method::DELETE, &path, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method.clone(), &url)
            .basic_auth(&self.user, Some(&self.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}: is the rabbitmq_management plugin on?"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!(
                "{method} {url}: {status}: {}",
                text.chars().take(500).collect::<String>()
            );
        }
        Ok(())
    }
}

/// `text` as one URL path segment (`/` is the default vhost's name).
fn segment(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

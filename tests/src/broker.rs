//! Broker identities under test: a fresh vhost with one user per identity (unique names, random
//! passwords), set up by the code under test (`shared::broker::setup`) through the management
//! API, and deleted with its users at the end. The test's own admin connection (the local
//! broker's administrator, `guest` by default) is granted everything in the vhost, to inspect
//! it: [`TestBroker::new`] returns it as a [`TestAmqp`] with the identities' prefix.

use lapin::uri::AMQPUri;
use shared::broker::permissions::{Permissions, Role};
use shared::broker::{Management, Passwords, Plan};
use shared::config::AmqpSettings;

use crate::TestAmqp;

/// The management API of the local broker: `RABBITMQ_MANAGEMENT_URL`, `RABBITMQ_ADMIN_USER`,
/// `RABBITMQ_ADMIN_PASSWORD` (default the local one as guest).
pub fn management() -> Management {
    let env = |name: &str, default: &str| shared::config::env_or(name, default);
    Management::new(
        &env("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672"),
        &env("RABBITMQ_ADMIN_USER", "guest"),
        &env("RABBITMQ_ADMIN_PASSWORD", "guest"),
    )
}

/// A vhost set up with one identity per role, and the test's admin view of it.
pub struct TestBroker {
    pub plan: Plan,
    passwords: Passwords,
    host_port: String,
}

impl TestBroker {
    /// A vhost with the relay, the operator and one identity per name in `consumers`, and the
    /// test's admin view of it.
    pub async fn new(consumers: &[&str]) -> (Self, TestAmqp) {
        crate::init_tracing();
        let name = format!("t{}", crate::unique_suffix());
        let plan = Plan {
            vhost: name.clone(),
            prefix: name.clone(),
            user_prefix: format!("{name}-"),
            consumers: consumers.iter().map(|c| (*c).to_owned()).collect(),
            with_admin: false,
        };
        let roles = plan.roles();
        let passwords =
            Passwords::from_sources(
                &roles,
                None,
                |_| Some(shared::broker::passwords::generate()),
            )
            .expect("passwords");
        let management = management();
        shared::broker::setup(&plan, &passwords, &management)
            .await
            .expect("broker setup through the management API (rabbitmq_management enabled?)");
        let admin_url: AMQPUri = crate::amqp_url().parse().expect("AMQP_URL");
        let all = Permissions {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        management
            .grant(&plan.vhost, &admin_url.authority.userinfo.username, &all)
            .await
            .expect("grant the test's admin the vhost");
        let host_port = format!("{}:{}", admin_url.authority.host, admin_url.authority.port);
        let mut in_vhost = admin_url;
        in_vhost.vhost = plan.vhost.clone();
        let amqp = TestAmqp::at(&in_vhost.to_string(), &plan.prefix).await;
        let broker = Self {
            plan,
            passwords,
            host_port,
        };
        (broker, amqp)
    }

    /// The AMQP URL of `role`'s identity.
    pub fn url(&self, role: &Role) -> String {
        let password = self.passwords.get(role).expect("a role of the plan");
        self.plan.amqp_url(role, password, &self.host_port)
    }

    /// `amqp`'s settings with `role`'s identity.
    pub fn settings(&self, amqp: &TestAmqp, role: &Role) -> AmqpSettings {
        let mut settings = amqp.settings();
        settings.url = self.url(role);
        settings
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let (vhost, users) = (
            self.plan.vhost.clone(),
            self.plan
                .roles()
                .iter()
                .map(|role| self.plan.user(role))
                .collect::<Vec<_>>(),
        );
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let management = management();
                let _ = management.delete_vhost(&vhost).await;
                for user in users {
                    let _ = management.delete_user(&user).await;
                }
                Some(())
            })
        })
        .join();
    }
}

//! `sagactl broker`: least-privilege broker identities, a thin adapter over
//! [`shared::broker`].
//!
//! - `setup`: applies the vhost, one user per identity, their permissions and the shared
//!   exchanges to a broker through its management API, and prints each identity's `AMQP_URL`
//!   shape (passwords stay in their files or variables).
//! - `definitions`: prints (or writes) the same as a definitions document, for a broker that
//!   loads it at boot (`load_definitions`) or `rabbitmqctl import_definitions`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use shared::broker::{self, Definitions, Management, Passwords, Plan, passwords};

#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[command(subcommand)]
    command: BrokerCommand,
}

#[derive(Debug, Subcommand)]
enum BrokerCommand {
    /// Create or update the vhost, the identities and their permissions on a running broker.
    Setup {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        management: ManagementArgs,
    },
    /// Print the definitions document (with password hashes) instead of applying it.
    Definitions {
        #[command(flatten)]
        plan: PlanArgs,
        /// Also a vhost administrator `admin` (a broker loading definitions at boot has none).
        #[arg(long)]
        with_admin: bool,
        /// Write the document here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// What to set up.
#[derive(Debug, Args)]
struct PlanArgs {
    /// The vhost every identity is confined to.
    #[arg(long, env = "BROKER_VHOST", default_value = "saga")]
    vhost: String,
    /// The exchange and queue name prefix the services use.
    #[arg(long, env = "AMQP_PREFIX", default_value = shared::config::DEFAULT_AMQP_PREFIX)]
    prefix: String,
    /// Put before every user name (several deployments on one broker).
    #[arg(long, env = "BROKER_USER_PREFIX", default_value = "")]
    user_prefix: String,
    /// The consumers, one identity each (comma-separated).
    #[arg(long, env = "DLQ_CONSUMERS", default_value = shared::dlq::DEFAULT_CONSUMERS)]
    consumers: String,
    /// One password file per identity, named after it; missing ones are generated (mode 0600).
    /// `BROKER_PASSWORD_<IDENTITY>` variables take precedence.
    #[arg(long, env = "BROKER_PASSWORDS_DIR")]
    passwords_dir: Option<PathBuf>,
    /// Use the development passwords (`<identity>-dev`): for a local broker only.
    #[arg(long)]
    dev: bool,
}

/// The management API and the administrator that applies the setup.
#[derive(Args)]
struct ManagementArgs {
    /// The management API's base URL.
    #[arg(
        long,
        env = "RABBITMQ_MANAGEMENT_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    management_url: String,
    /// An administrator of the broker.
    #[arg(long, env = "RABBITMQ_ADMIN_USER", default_value = "guest")]
    admin_user: String,
    /// That administrator's password.
    #[arg(
        long,
        env = "RABBITMQ_ADMIN_PASSWORD",
        default_value = "guest",
        hide_env_values = true
    )]
    admin_password: String,
}

impl std::fmt::Debug for ManagementArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementArgs")
            .field("management_url", &self.management_url)
            .field("admin_user", &self.admin_user)
            .finish()
    }
}

pub async fn run(args: BrokerArgs) -> anyhow::Result<()> {
    match args.command {
        BrokerCommand::Setup { plan, management } => {
            let (plan, passwords) = resolve(&plan, false)?;
            let management = Management::new(
                &management.management_url,
                &management.admin_user,
                &management.admin_password,
            );
            broker::setup(&plan, &passwords, &management).await?;
            report(&plan, &passwords);
            Ok(())
        }
        BrokerCommand::Definitions {
            plan,
            with_admin,
            out,
        } => {
            let (plan, passwords) = resolve(&plan, with_admin)?;
            let json = Definitions::build(&plan, &passwords)?.to_pretty_json()?;
            match out {
                Some(path) => std::fs::write(&path, json)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{json}"),
            }
            for path in &passwords.generated {
                eprintln!("generated a password in {}", path.display());
            }
            Ok(())
        }
    }
}

fn resolve(args: &PlanArgs, with_admin: bool) -> anyhow::Result<(Plan, Passwords)> {
    let plan = Plan {
        vhost: args.vhost.clone(),
        prefix: args.prefix.clone(),
        user_prefix: args.user_prefix.clone(),
        consumers: shared::dlq::consumers_from(&args.consumers),
        with_admin,
    };
    let passwords = if args.dev {
        Passwords::dev(&plan.roles())
    } else {
        Passwords::from_sources(&plan.roles(), args.passwords_dir.as_deref(), |name| {
            std::env::var(name).ok()
        })?
    };
    Ok((plan, passwords))
}

/// Which user each process connects as, and where its password is.
fn report(plan: &Plan, passwords: &Passwords) {
    println!("broker identities in vhost {:?}:", plan.vhost);
    for role in plan.roles() {
        println!(
            "  {:<10} user {:<16} AMQP_URL=amqp://{}:<{}>@<host>:5672/{}",
            role.name(),
            plan.user(&role),
            plan.user(&role),
            passwords::variable(&role),
            plan.vhost
        );
    }
    for path in &passwords.generated {
        println!("generated a password in {}", path.display());
    }
}

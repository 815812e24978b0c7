//! The container deployment's broker identities, statically: the broker loads
//! deploy/rabbitmq/definitions.json at boot, that file is what `sagactl broker definitions
//! --dev --with-admin` generates, and every process connects as its own identity from it with
//! its development password.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "deploy_support/mod.rs"]
#[allow(dead_code)] // shared with deploy.rs, which uses all of it
mod deploy_support;

use deploy_support::*;
use lapin::uri::AMQPUri;
use shared::broker::{Definitions, Passwords, Plan, passwords};

fn committed() -> Definitions {
    serde_json::from_str(&read("deploy/rabbitmq/definitions.json")).unwrap()
}

/// The definitions with the (salted, so ever different) hashes left out.
fn without_hashes(mut definitions: Definitions) -> Definitions {
    for user in &mut definitions.users {
        user.password_hash.clear();
    }
    definitions
}

#[test]
fn the_committed_definitions_are_the_generated_development_set() {
    let plan = Plan {
        vhost: "saga".into(),
        prefix: shared::config::DEFAULT_AMQP_PREFIX.into(),
        user_prefix: String::new(),
        consumers: shared::dlq::consumers_from(shared::dlq::DEFAULT_CONSUMERS),
        with_admin: true,
    };
    let generated = Definitions::build(&plan, &Passwords::dev(&plan.roles())).unwrap();
    let committed = committed();
    for user in &committed.users {
        let dev = format!("{}-dev", user.name);
        assert!(
            passwords::verify(&user.password_hash, &dev),
            "{}",
            user.name
        );
    }
    assert_eq!(
        without_hashes(committed),
        without_hashes(generated),
        "regenerate with: sagactl broker definitions --dev --with-admin --out deploy/rabbitmq/definitions.json"
    );
}

#[test]
fn the_broker_loads_the_definitions_at_boot() {
    let (_, rabbit) = services()
        .into_iter()
        .find(|(_, s)| text(&s["image"]).starts_with("rabbitmq"))
        .unwrap();
    let mounts = mounts(&rabbit);
    let target = |source: &str| {
        mounts
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{source} is not mounted"))
    };
    let json = target("./deploy/rabbitmq/definitions.json");
    assert!(target("./deploy/rabbitmq/definitions.conf").starts_with("/etc/rabbitmq/conf.d/"));
    let conf = read("deploy/rabbitmq/definitions.conf");
    assert!(
        conf.lines()
            .any(|line| line.trim() == format!("load_definitions = {json}")),
        "{conf}"
    );
}

#[test]
fn every_process_connects_as_its_own_identity_with_its_development_password() {
    let definitions = committed();
    let mut seen = Vec::new();
    for (name, (binary, service)) in ours() {
        let env = environment(&service);
        let identity = match binary.as_str() {
            "outbox-relay" => "relay".to_owned(),
            other => other.trim_end_matches("-service").to_owned(),
        };
        let mut urls = vec![("AMQP_URL", identity)];
        if env.contains_key("ADMIN_AMQP_URL") {
            urls.push(("ADMIN_AMQP_URL", "operator".to_owned()));
        }
        for (var, identity) in urls {
            let url: AMQPUri = env[var].parse().unwrap();
            let user = &url.authority.userinfo;
            assert_eq!(user.username, identity, "{name} {var}");
            let defined = definitions.users.iter().find(|u| u.name == identity);
            let defined = defined.unwrap_or_else(|| panic!("no user {identity}"));
            assert!(
                passwords::verify(&defined.password_hash, &user.password),
                "{name} {var}: not {identity}'s password"
            );
            let granted = definitions.permissions.iter().find(|p| p.user == identity);
            assert_eq!(granted.unwrap().vhost, url.vhost, "{name} {var}");
            seen.push(identity);
        }
    }
    seen.sort();
    let expected = [
        "balance", "coupon", "monitor", "operator", "order", "product", "relay",
    ];
    assert_eq!(seen, expected);
}

//! The permission table and the password hash, without a broker (the broker's own verdicts are
//! in shared/tests/broker_identities.rs).

use super::passwords::{self, Passwords};
use super::permissions::{Role, permissions};
use super::{Definitions, Plan};

fn plan() -> Plan {
    Plan {
        vhost: "saga".into(),
        prefix: "saga".into(),
        user_prefix: String::new(),
        consumers: vec!["order".into(), "monitor".into()],
        with_admin: false,
    }
}

#[test]
fn a_hash_verifies_its_password_only_and_is_salted() {
    let first = passwords::hash("s3cret");
    assert!(passwords::verify(&first, "s3cret"));
    assert!(!passwords::verify(&first, "s3cret "));
    assert_ne!(first, passwords::hash("s3cret"), "a fresh salt each time");
    assert!(!passwords::verify("not base64!", "s3cret"));
}

#[test]
fn the_relay_writes_the_events_exchange_only_and_the_operator_reads_dead_letters_and_replays_through_inbound_exchanges()
 {
    let relay = permissions("saga", &Role::Relay);
    assert_eq!(
        (
            relay.configure.as_str(),
            relay.write.as_str(),
            relay.read.as_str()
        ),
        ("^$", "^saga\\.events$", "^$")
    );
    let operator = permissions("saga", &Role::Operator);
    assert_eq!(operator.configure, "^$");
    assert_eq!(operator.write, "^(saga\\.[^.]+\\.in|saga\\.dlx)$");
    assert_eq!(operator.read, "^saga\\.[^.]+\\.dlq$");
}

#[test]
fn a_consumer_is_confined_to_its_own_names_and_never_the_default_exchange() {
    let order = permissions("t.x", &Role::Consumer("order".into()));
    assert_eq!(
        order.configure,
        "^(t\\.x\\.order\\.in|t\\.x\\.order\\.p[0-9]+|t\\.x\\.order\\.dlq\
         |t\\.x\\.order\\.retry|t\\.x\\.order\\.delay-[0-9]+ms)$"
    );
    assert!(order.write.contains("t\\.x\\.dlx") && !order.write.contains("events"));
    assert!(order.read.contains("t\\.x\\.events") && !order.read.contains("dlq"));
    for regex in [&order.configure, &order.write, &order.read] {
        assert!(!regex.contains("amq"), "{regex}");
    }
}

#[test]
fn the_password_comes_from_its_variable_else_its_file_else_a_new_file() {
    let dir = std::env::temp_dir().join(format!("broker-pw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("order"), "from-file\n").expect("write");
    let roles = plan().roles();
    let env = |name: &str| (name == "BROKER_PASSWORD_RELAY").then(|| "from-env".to_owned());
    let passwords = Passwords::from_sources(&roles, Some(&dir), env).expect("passwords");
    assert_eq!(passwords.get(&Role::Relay).expect("relay"), "from-env");
    assert_eq!(
        passwords
            .get(&Role::Consumer("order".into()))
            .expect("order"),
        "from-file"
    );
    let generated = passwords.get(&Role::Operator).expect("operator").to_owned();
    assert_eq!(generated.len(), 32);
    let written = std::fs::read_to_string(dir.join("operator")).expect("generated file");
    assert_eq!(written.trim(), generated);
    assert_eq!(passwords.generated.len(), 2, "monitor and operator");
    assert!(Passwords::from_sources(&roles, None, |_| None).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_definitions_hold_every_identity_in_the_vhost_and_the_shared_exchanges() {
    let plan = Plan {
        with_admin: true,
        ..plan()
    };
    let passwords = Passwords::dev(&plan.roles());
    let definitions = Definitions::build(&plan, &passwords).expect("build");
    let users: Vec<_> = definitions.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(users, ["relay", "order", "monitor", "operator", "admin"]);
    for user in &definitions.users {
        assert!(passwords::verify(
            &user.password_hash,
            &format!("{}-dev", user.name)
        ));
    }
    assert!(definitions.permissions.iter().all(|p| p.vhost == "saga"));
    let exchanges: Vec<_> = definitions
        .exchanges
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(exchanges, ["saga.events", "saga.dlx"]);
    assert_eq!(
        plan.amqp_url(&Role::Operator, "p@ss", "rabbitmq:5672"),
        "amqp://operator:p%40ss@rabbitmq:5672/saga"
    );
}

//! The identities and the permissions each holds, as RabbitMQ's three regular expressions over
//! exchange and queue names: *configure* (declare, delete), *write* (publish to an exchange,
//! bind a queue) and *read* (consume or purge a queue, bind from an exchange).
//!
//! Two rules shape the table. Publishing through the default exchange, and declaring a queue
//! that dead-letters to it, needs write on `amq.default`, which reaches every queue of the
//! vhost: no identity holds it (replays go through a consumer's inbound exchange). And declaring a queue with a dead-letter
//! exchange needs read on the queue and write on that exchange, checked when it is created.

/// One identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The outbox relay: publishes saga events.
    Relay,
    /// A consumer (a service or the monitor), by its name.
    Consumer(String),
    /// `sagactl dlq` and the admin API: reads dead letters, replays them.
    Operator,
    /// A development administrator (the management UI of a broker that loads definitions at
    /// boot); never part of a production setup.
    Admin,
}

impl Role {
    /// The role's name: the user name (after the user prefix), the password file, and the
    /// `BROKER_PASSWORD_*` variable.
    pub fn name(&self) -> &str {
        match self {
            Self::Relay => "relay",
            Self::Consumer(name) => name,
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// The user tags: only the development admin has any.
    pub fn tags(&self) -> &'static str {
        match self {
            Self::Admin => "administrator",
            _ => "",
        }
    }
}

/// Configure, write and read, each a regular expression over resource names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// Matches no name at all (RabbitMQ's idiom for "nothing").
const NOTHING: &str = "^$";

/// What `role` may do under `prefix`.
pub fn permissions(prefix: &str, role: &Role) -> Permissions {
    let p = escape(prefix);
    match role {
        // Publishes to the events exchange, nothing else; it does not declare it either (the
        // setup does), so no configure permission that could delete it.
        Role::Relay => Permissions {
            configure: NOTHING.into(),
            write: format!("^{p}\\.events$"),
            read: NOTHING.into(),
        },
        Role::Consumer(name) => {
            let own = format!("{p}\\.{}", escape(name));
            let inbound = format!("{own}\\.in");
            let partitions = format!("{own}\\.p[0-9]+");
            let retry = format!("{own}\\.retry|{own}\\.delay-[0-9]+ms");
            Permissions {
                // Its inbound and retry exchanges, partition, delay and dead-letter queues.
                configure: format!("^({inbound}|{partitions}|{own}\\.dlq|{retry})$"),
                // Bind its queues and its inbound exchange; publish retries to its retry
                // exchange and dead letters to the shared dead-letter exchange; the exchanges
                // its queues dead-letter to (the shared one, its inbound one).
                write: format!("^({inbound}|{partitions}|{own}\\.dlq|{retry}|{p}\\.dlx)$"),
                // Consume its partitions; bind from the events, inbound, dead-letter and retry
                // exchanges; read on the queues that dead-letter (checked when they are
                // declared). Not its dead-letter queue: that is the operator's.
                read: format!("^({inbound}|{partitions}|{retry}|{p}\\.events|{p}\\.dlx)$"),
            }
        }
        // Reads (lists, purges) dead-letter queues, replays into a consumer's inbound
        // exchange, which hashes each copy to its saga's partition, and restores archived
        // messages through the dead-letter exchange, as their consumer dead-lettered them.
        Role::Operator => Permissions {
            configure: NOTHING.into(),
            write: format!("^({p}\\.[^.]+\\.in|{p}\\.dlx)$"),
            read: format!("^{p}\\.[^.]+\\.dlq$"),
        },
        Role::Admin => Permissions {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        },
    }
}

/// `text` with every regular-expression metacharacter escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

//! A binary's command line, as an operator meets it: `--help` is the configuration reference
//! and starts nothing, `--version` answers, a wrong flag is refused, and no secret from the
//! environment shows in either.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SECRET: &str = "s3cr3t-never-shown";

/// The variables every service binary takes besides its own `{NAME}_PORT` and
/// `{NAME}_DATABASE_URL`.
pub const SERVICE_VARIABLES: [&str; 26] = [
    "HTTP_HOST",
    "HTTP_WORKERS",
    "DB_POOL_SIZE",
    "DB_POOL_TIMEOUT",
    "DATABASE_BASE_URL",
    "DATABASE_DIRECT_URL",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGSSLMODE",
    "AMQP_URL",
    "AMQP_PREFIX",
    "AMQP_TLS_CA",
    "AMQP_TLS_CLIENT_CERT",
    "AMQP_TLS_CLIENT_KEY",
    "CONSUMER_PREFETCH",
    "CONSUMER_CONCURRENCY",
    "CONSUMER_MAX_ATTEMPTS",
    "CONSUMER_RETRY_DELAYS",
    "INBOX_WINDOW",
    "CLEANUP_INTERVAL",
    "EVENT_KEYS",
    "EVENT_SIGNING_KEY",
    "EVENT_VERIFY_KEYS",
    "EVENT_DATA_KEYS",
];

/// [`assert_command_line`] for service `name` (`order`, ...): its own variables, the shared
/// ones, and `extra`.
pub fn assert_service_command_line(binary: &str, name: &str, extra: &[&str]) {
    let upper = name.to_uppercase();
    let own = [format!("{upper}_PORT"), format!("{upper}_DATABASE_URL")];
    let mut variables: Vec<&str> = own.iter().map(String::as_str).collect();
    variables.extend(SERVICE_VARIABLES);
    variables.extend(extra);
    assert_command_line(binary, &format!("{name}-service"), &variables);
}

/// Runs `binary args` with secrets and `env` planted in the environment, expecting it to exit on
/// its own; panics if it runs past 20 s (a binary that ignored its arguments and started
/// serving).
pub fn run_expecting_exit(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary);
    command.args(args).envs(env.iter().copied());
    run_command(binary, args, &mut command)
}

fn run(binary: &str, args: &[&str]) -> Output {
    run_expecting_exit(binary, args, &[])
}

fn run_command(binary: &str, args: &[&str], command: &mut Command) -> Output {
    let mut child = command
        .env("PGPASSWORD", SECRET)
        .env(
            "AMQP_URL",
            format!("amqp://guest:{SECRET}@127.0.0.1:5672/%2f"),
        )
        .env("ADMIN_TOKEN", SECRET)
        .env("EVENT_SIGNING_KEY", format!("order:k:{SECRET}"))
        .env("EVENT_DATA_KEYS", format!("d:{SECRET}"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{binary}: {err}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{binary} {args:?} did not exit: it ignored its arguments");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Asserts `binary --help` lists every variable of `variables` and exits 0 at once,
/// `--version` prints `name version`, and an unknown flag exits 2; none shows a secret.
pub fn assert_command_line(binary: &str, name: &str, variables: &[&str]) {
    let help = run(binary, &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{name} --help: {help:?}");
    for variable in variables {
        assert!(
            text.contains(&format!("env: {variable}")),
            "{name} --help lacks {variable}:\n{text}"
        );
    }
    let version = run(binary, &["--version"]);
    let printed = String::from_utf8_lossy(&version.stdout);
    assert!(version.status.success(), "{name} --version: {version:?}");
    assert_eq!(
        printed.trim(),
        format!("{name} {}", env!("CARGO_PKG_VERSION"))
    );
    let wrong = run(binary, &["--no-such-flag"]);
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "{name} --no-such-flag: {wrong:?}"
    );
    for output in [&help, &version, &wrong] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!all.contains(SECRET), "{name} printed a secret:\n{all}");
    }
}

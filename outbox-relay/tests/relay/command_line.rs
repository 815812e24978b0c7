//! `outbox-relay --help` is its configuration reference and starts nothing.

#[test]
fn help_lists_every_variable_and_version_answers_without_starting_the_relay() {
    testkit::binary::assert_command_line(
        env!("CARGO_BIN_EXE_outbox-relay"),
        "outbox-relay",
        &[
            "RELAY_DATABASE_URLS",
            "AMQP_URL",
            "AMQP_PREFIX",
            "AMQP_TLS_CA",
            "AMQP_TLS_CLIENT_CERT",
            "AMQP_TLS_CLIENT_KEY",
            "RELAY_BATCH_SIZE",
            "RELAY_CLAIMERS",
            "RELAY_POLL_INTERVAL",
            "RELAY_RETENTION",
            "RELAY_CLEANUP_INTERVAL",
            "RELAY_DB_TIMEOUT",
            "RELAY_MAX_BACKOFF",
            "RELAY_METRICS_PORT",
            "HTTP_HOST",
            "RELAY_BACKLOG_INTERVAL",
            "DATABASE_BASE_URL",
            "DATABASE_DIRECT_URL",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGSSLMODE",
        ],
    );
}

#[test]
fn a_renamed_variable_is_refused_naming_its_replacement() {
    let output = testkit::binary::run_expecting_exit(
        env!("CARGO_BIN_EXE_outbox-relay"),
        &[],
        &[("RELAY_POLL_INTERVAL_MS", "5000")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("RELAY_POLL_INTERVAL_MS was renamed RELAY_POLL_INTERVAL"),
        "{stderr}"
    );
}

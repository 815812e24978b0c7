//! `monitor-service --help` is its configuration reference and starts nothing.

#[test]
fn help_lists_every_variable_and_version_answers_without_starting_the_service() {
    testkit::binary::assert_service_command_line(
        env!("CARGO_BIN_EXE_monitor-service"),
        "monitor",
        &[
            "ADMIN_TOKEN",
            "DLQ_CONSUMERS",
            "ADMIN_PURGE_DIR",
            "ADMIN_RATE_LIMIT",
            "ADMIN_AMQP_URL",
            "MONITOR_RETENTION",
        ],
    );
}

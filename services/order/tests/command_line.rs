//! `order-service --help` is its configuration reference and starts nothing.

#[test]
fn help_lists_every_variable_and_version_answers_without_starting_the_service() {
    testkit::binary::assert_command_line(
        env!("CARGO_BIN_EXE_order-service"),
        "order-service",
        &[
            "ORDER_PORT",
            "ORDER_DATABASE_URL",
            "HTTP_HOST",
            "HTTP_WORKERS",
            "DB_POOL_SIZE",
            "DB_POOL_TIMEOUT",
            "DATABASE_BASE_URL",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGSSLMODE",
            "AMQP_URL",
            "AMQP_PREFIX",
            "CONSUMER_PREFETCH",
            "CONSUMER_CONCURRENCY",
            "CONSUMER_MAX_ATTEMPTS",
            "CONSUMER_RETRY_DELAYS",
        ],
    );
}

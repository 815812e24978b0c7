//! `balance-service --help` is its configuration reference and starts nothing.

#[test]
fn help_lists_every_variable_and_version_answers_without_starting_the_service() {
    testkit::binary::assert_service_command_line(
        env!("CARGO_BIN_EXE_balance-service"),
        "balance",
        &[],
    );
}

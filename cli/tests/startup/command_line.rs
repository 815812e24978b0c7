//! `sagactl --help` and `--version` answer; `sagactl verify --help` lists its variables.

#[test]
fn help_and_version_answer() {
    testkit::binary::assert_command_line(env!("CARGO_BIN_EXE_sagactl"), "sagactl", &[]);
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args(["verify", "--help"])
        .output()
        .expect("run sagactl");
    let text = String::from_utf8_lossy(&help.stdout);
    for variable in ["ORDER_DATABASE_URL", "PGHOST", "AMQP_URL", "DLQ_CONSUMERS"] {
        assert!(text.contains(&format!("env: {variable}")), "{text}");
    }
    assert!(text.contains("--json"), "{text}");
}

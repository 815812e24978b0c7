//! The benchmark binaries answer `--help` and `--version` without running, and refuse arguments.

#[test]
fn every_benchmark_binary_answers_help_and_version_without_running() {
    for (binary, name) in [
        (env!("CARGO_BIN_EXE_relay-bench"), "relay-bench"),
        (env!("CARGO_BIN_EXE_saga-bench"), "saga-bench"),
        (env!("CARGO_BIN_EXE_saga-monolith"), "saga-monolith"),
        (env!("CARGO_BIN_EXE_seal-bench"), "seal-bench"),
    ] {
        testkit::binary::assert_command_line(binary, name, &[]);
    }
}

#[test]
fn an_old_duration_knob_is_refused_naming_its_replacement() {
    let output = testkit::binary::run_expecting_exit(
        env!("CARGO_BIN_EXE_relay-bench"),
        &[],
        &[("BENCH_LATENCY_SECS", "20")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("BENCH_LATENCY_SECS was renamed BENCH_LATENCY"),
        "{stderr}"
    );
}

#[test]
fn saga_bench_refuses_instances_that_are_not_a_positive_count() {
    for (value, expected) in [
        ("0", "SAGA_BENCH_INSTANCES must be at least 1"),
        ("two", "SAGA_BENCH_INSTANCES=\"two\""),
        ("-1", "SAGA_BENCH_INSTANCES=\"-1\""),
    ] {
        let output = testkit::binary::run_expecting_exit(
            env!("CARGO_BIN_EXE_saga-bench"),
            &[],
            &[("SAGA_BENCH_INSTANCES", value)],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{value}: {stderr}");
        assert!(stderr.contains(expected), "{value}: {stderr}");
    }
}

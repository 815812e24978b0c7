//! Fuzzing against the contract: schemathesis (scripts/test.sh installs it) generates requests
//! from each running service's OpenAPI document, valid and invalid ones, and checks every
//! answer: no 5xx, the status, content type, headers and body as the document says, and
//! (cli/tests/api/checks.py) every 4xx the error object naming the field at fault.
//!
//! Bounded: `FUZZ_EXAMPLES` cases per operation and phase (default 40), with a fixed seed
//! (`FUZZ_SEED`) so that a failure reproduces. The admin API is left out: the contract test
//! probes it, and fuzzing it would replay and purge dead letters by the hundred.

use std::path::Path;

use crate::system::{SERVICES, System};

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      error_object_names_the_field";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// schemathesis against `document`; its report when it found something.
async fn fuzz(document: &str, report: &Path) -> Option<String> {
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/checks.py");
    let output = tokio::process::Command::new("schemathesis")
        .args(["--no-color", "run", document, "--checks", CHECKS])
        .args(["--max-examples", &setting("FUZZ_EXAMPLES", "40")])
        .args(["--seed", &setting("FUZZ_SEED", "20261206")])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--generation-database", "none", "--workers", "1"])
        // Above the longest `wait_ms` long poll (30 s) a generated request may ask for.
        .args(["--request-timeout", "40", "--suppress-health-check", "all"])
        .arg("--report-dir")
        .arg(report)
        // Its cache of found failures goes there too, not into the source tree.
        .current_dir(report)
        .env("SCHEMATHESIS_HOOKS", hooks)
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis (scripts/test.sh installs it: pip install schemathesis)");
    if output.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(150).collect();
    Some(format!(
        "{}\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_against_any_services_contract() {
    let system = System::start().await;
    let report = std::env::temp_dir().join(format!("fuzz-{}", testkit::unique_suffix()));
    let mut found = Vec::new();
    for name in SERVICES {
        let document = format!("{}/openapi.json", system.app(name).base_url);
        let dir = report.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(failure) = fuzz(&document, &dir).await {
            found.push(format!("== {name} ==\n{failure}"));
        }
    }
    system.stop().await;
    assert!(found.is_empty(), "{}", found.join("\n\n"));
    let _ = std::fs::remove_dir_all(&report);
}

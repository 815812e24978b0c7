//! Static validation of the container deployment, no Docker engine needed: docker-compose.yml,
//! the Dockerfile, prometheus/prometheus.yml and the Grafana provisioning files, checked against
//! the workspace's binaries, the README's Configuration table and each other.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};

use deploy_support::*;

#[test]
fn compose_parses_and_every_service_has_an_image_or_a_build() {
    let services = services();
    assert!(
        services.len() >= 10,
        "too few services: {:?}",
        services.keys()
    );
    for (name, service) in &services {
        let has = |key: &str| !service[key].is_null();
        assert!(
            has("image") || has("build"),
            "{name} has neither image nor build"
        );
    }
}

#[test]
fn every_dependency_exists_and_every_health_condition_has_a_healthcheck() {
    let services = services();
    for (name, service) in &services {
        for (dependency, condition) in depends_on(service) {
            let target = services.get(&dependency);
            assert!(target.is_some(), "{name} depends on unknown {dependency}");
            if condition.as_deref() == Some("service_healthy") {
                let test = &target.unwrap()["healthcheck"]["test"];
                assert!(
                    !test.is_null(),
                    "{name} waits for {dependency}, which has no healthcheck"
                );
            }
        }
    }
}

#[test]
fn every_command_is_a_workspace_binary_and_every_service_and_the_relay_run() {
    let binaries = workspace_binaries();
    let run: BTreeSet<String> = ours().into_values().map(|(binary, _)| binary).collect();
    for (name, service) in services() {
        if let Some(program) = command(&service).filter(|_| !service["build"].is_null()) {
            assert!(
                binaries.contains_key(&program),
                "{name} runs {program}, not ours"
            );
        }
    }
    let expected = binaries
        .iter()
        .filter(|(_, package)| package.ends_with("-service") || package.as_str() == "outbox-relay");
    for (binary, _) in expected {
        assert!(run.contains(binary), "no compose service runs {binary}");
    }
}

#[test]
fn every_variable_set_for_our_services_is_documented_in_the_readme() {
    let documented = readme_config();
    let names: Vec<String> = readme_ports().keys().map(|n| n.to_uppercase()).collect();
    let is_documented = |var: &str| {
        documented.contains_key(var)
            || documented.keys().any(|row| {
                row.contains("{NAME}") && names.iter().any(|n| row.replace("{NAME}", n) == var)
            })
    };
    for (name, (_, service)) in ours() {
        let env = environment(&service);
        assert!(!env.is_empty(), "{name} sets no environment");
        for var in env.keys() {
            assert!(
                is_documented(var),
                "{name} sets {var}, not in the README's table"
            );
        }
        assert_eq!(
            env.get("HTTP_HOST").map(String::as_str),
            Some("0.0.0.0"),
            "{name}"
        );
    }
}

#[test]
fn urls_point_at_compose_services_and_the_relay_serves_the_four_service_databases() {
    let services = services();
    let ours = ours();
    // Alone, and with the `cluster` profile's three nodes named (README, "Docker").
    let cluster = BTreeMap::from([(
        "AMQP_NODES",
        "rabbitmq:5672,rabbitmq-2:5672,rabbitmq-3:5672",
    )]);
    for shell in [BTreeMap::new(), cluster] {
        for (name, (_, service)) in &ours {
            for (var, value) in environment_with(service, &shell)
                .into_iter()
                .filter(|(_, v)| v.contains("://"))
            {
                for url in urls(&value) {
                    let host = host(&url);
                    assert!(services.contains_key(host), "{name} {var} points at {host}");
                }
            }
        }
    }
    // README: the relay's default is the saga_order, saga_product, … databases.
    let default = &readme_config()["RELAY_DATABASE_URLS"];
    let sources: BTreeSet<&str> = default
        .split("`saga_")
        .skip(1)
        .map(|s| &s[..s.find('`').unwrap()])
        .collect();
    assert_eq!(sources.len(), 4, "{default}");
    let (relay, (_, relay_service)) = ours
        .iter()
        .find(|(_, (binary, _))| binary == "outbox-relay")
        .unwrap();
    let relay_env = environment(relay_service);
    let relayed: BTreeSet<&str> = relay_env["RELAY_DATABASE_URLS"]
        .split(',')
        .map(str::trim)
        .collect();
    let waits = depends_on(relay_service);
    let mut expected = BTreeSet::new();
    for source in &sources {
        let var = format!("{}_DATABASE_URL", source.to_uppercase());
        let (owner, (_, service)) = ours
            .iter()
            .find(|(_, (_, s))| environment(s).contains_key(&var))
            .unwrap();
        expected.insert(environment(service)[&var].clone());
        // The owner creates and migrates that database; the relay must wait for it.
        let condition = waits.get(owner).cloned().flatten();
        assert_eq!(
            condition.as_deref(),
            Some("service_healthy"),
            "{relay} / {owner}"
        );
    }
    assert_eq!(
        relayed,
        expected.iter().map(String::as_str).collect(),
        "{relay}"
    );
}

#[test]
fn published_ports_and_healthchecks_match_the_default_ports() {
    let ours = ours();
    let listening = listening();
    assert_eq!(
        listening.len(),
        6,
        "five services and the relay: {listening:?}"
    );
    for (name, (binary, service)) in &ours {
        let (port, path) = listening[name];
        // On the host's loopback interface: for operators, clients use the gateway.
        let published = strings(&service["ports"]);
        assert!(
            published.contains(&format!("127.0.0.1:{port}:{port}")),
            "{name}: {published:?}"
        );
        if let Some(service_name) = binary.strip_suffix("-service") {
            let var = format!("{}_PORT", service_name.to_uppercase());
            if let Some(set) = environment(service).get(&var) {
                assert_eq!(set, &port.to_string(), "{name} {var}");
            }
        }
        let test = strings(&service["healthcheck"]["test"]).join(" ");
        assert!(test.contains("curl"), "{name}: {test}");
        assert!(
            test.contains(&format!("localhost:{port}{path}")),
            "{name}: {test}"
        );
    }
}

#[test]
fn prometheus_scrapes_every_service_and_the_broker_at_their_ports() {
    let services = services();
    let config = yaml("prometheus/prometheus.yml");
    assert_eq!(text(&config["global"]["scrape_interval"]), "5s");
    let mut targets = BTreeMap::new();
    for job in config["scrape_configs"].as_sequence().unwrap() {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        for target in job["static_configs"].as_sequence().unwrap() {
            for address in strings(&target["targets"]) {
                let host = address.split(':').next().unwrap();
                assert!(
                    services.contains_key(host),
                    "prometheus scrapes unknown {host}"
                );
                targets.insert(address, (text(&job["job_name"]), path.to_owned()));
            }
        }
    }
    for (name, (port, _)) in listening() {
        let (job, path) = targets
            .get(&format!("{name}:{port}"))
            .unwrap_or_else(|| panic!("prometheus does not scrape {name}:{port}: {targets:?}"));
        assert_eq!((job.as_str(), path.as_str()), (name.as_str(), "/metrics"));
    }
    let (rabbit, broker) = services
        .iter()
        .find(|(_, s)| text(&s["image"]).starts_with("rabbitmq"))
        .unwrap();
    assert!(
        targets.contains_key(&format!("{rabbit}:15692")),
        "{targets:?}"
    );
    let plugins = mounts(broker)
        .into_iter()
        .find(|(_, t)| t == "/etc/rabbitmq/enabled_plugins");
    let plugins = read(&plugins.expect("enabled_plugins is not mounted").0);
    assert!(plugins.contains("rabbitmq_prometheus"), "{plugins}");
    let prometheus = &services["prometheus"];
    let mounted = mounts(prometheus);
    let config_mount = (
        "./prometheus/prometheus.yml".into(),
        "/etc/prometheus/prometheus.yml".into(),
    );
    assert!(mounted.contains(&config_mount), "{mounted:?}");
}

#[test]
fn every_bind_mount_source_exists() {
    for (name, service) in services() {
        for (source, _) in mounts(&service) {
            // The dashboards folder may be empty in a checkout; Grafana then loads none.
            if source != "./grafana/dashboards" {
                assert!(
                    root().join(&source).exists(),
                    "{name} mounts missing {source}"
                );
            }
        }
    }
}

#[test]
fn the_dockerfile_builds_and_copies_every_binary_the_compose_file_runs() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "not multi-stage");
    let copied = copies_into_final_stage(&stages);
    let binaries = workspace_binaries();
    for (name, (binary, _)) in ours() {
        let (source, destination) = copied.get(&binary).unwrap_or_else(|| {
            panic!("{name} runs {binary}, which the final stage does not copy: {copied:?}")
        });
        assert_eq!(destination, "/usr/local/bin/", "{binary}");
        let build = stages[*source]
            .instructions
            .iter()
            .find(|(k, a)| k == "RUN" && a.contains("cargo build"));
        let build = &build
            .unwrap_or_else(|| panic!("stage {source} runs no cargo build"))
            .1;
        assert!(
            build.contains("--release") && build.contains("--locked"),
            "{build}"
        );
        let package = binaries[&binary].as_str();
        let words: Vec<&str> = build.split_whitespace().collect();
        let builds = words.windows(2).any(|pair| pair == ["-p", package]);
        assert!(builds, "{build} lacks -p {package}");
    }
    // Whatever the image builds, it ships (sagactl is run with `docker compose exec`).
    for stage in &stages {
        for (_, run) in stage.instructions.iter().filter(|(k, _)| k == "RUN") {
            let words: Vec<&str> = run.split_whitespace().collect();
            for pair in words.windows(2).filter(|pair| pair[0] == "-p") {
                for (binary, _) in binaries.iter().filter(|(_, package)| *package == pair[1]) {
                    assert!(
                        copied.contains_key(binary),
                        "{binary} is built, not shipped"
                    );
                }
            }
        }
    }
    let runtime = stages.last().unwrap();
    assert!(
        runtime.base.starts_with("debian:bookworm"),
        "{}",
        runtime.base
    );
    let installs = runtime
        .instructions
        .iter()
        .any(|(k, a)| k == "RUN" && a.contains("install") && a.contains("curl"));
    assert!(
        installs,
        "the runtime stage does not install curl, which the healthchecks use"
    );
    let user = runtime
        .instructions
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, u)| u.as_str());
    assert!(
        matches!(user, Some(u) if u != "root" && u != "0"),
        "runs as root: {user:?}"
    );
}

#[test]
fn the_dockerignore_drops_build_output_but_nothing_the_build_needs() {
    let ignored = read(".dockerignore");
    let ignored: Vec<&str> = ignored
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .collect();
    assert!(
        ignored.contains(&"target") && ignored.contains(&".git"),
        "{ignored:?}"
    );
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "migrations",
        "shared",
        "services",
        "cli",
        "tests",
    ] {
        assert!(!ignored.contains(&needed), ".dockerignore drops {needed}");
    }
}

#[test]
fn grafana_provisions_the_prometheus_datasource_and_the_dashboards_folder() {
    let services = services();
    let datasources = yaml("grafana/provisioning/datasources/prometheus.yml");
    let sources = datasources["datasources"].as_sequence().unwrap();
    let source = sources
        .iter()
        .find(|s| s["uid"].as_str() == Some("prometheus"));
    let source = source.expect("no datasource with uid prometheus");
    assert_eq!(text(&source["type"]), "prometheus");
    assert_eq!(source["isDefault"].as_bool(), Some(true));
    let url = text(&source["url"]);
    let port = url.rsplit(':').next().unwrap();
    let prometheus = &services[host(&url)];
    assert!(
        strings(&prometheus["ports"]).contains(&format!("{port}:{port}")),
        "{url}"
    );
    let grafana = mounts(&services["grafana"]);
    let target_of = |source: &str| {
        grafana
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, t)| t.clone())
    };
    let provisioning = target_of("./grafana/provisioning");
    assert_eq!(provisioning.as_deref(), Some("/etc/grafana/provisioning"));
    let dashboards = yaml("grafana/provisioning/dashboards/dashboards.yml");
    let provider = &dashboards["providers"][0];
    assert_eq!(text(&provider["type"]), "file");
    assert_eq!(
        Some(text(&provider["options"]["path"])),
        target_of("./grafana/dashboards")
    );
}

//! The Kubernetes manifests (deploy/kubernetes): every kustomization renders and passes strict
//! schema validation for a pinned Kubernetes version, and what they set agrees with the binaries
//! they run: every variable is one the binary accepts, the probes reach paths it serves on the
//! port it listens on, each pod holds only its own signing key and broker identity, and no secret
//! is written in a manifest.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod kubernetes_support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use kubernetes_support::binaries::{HEALTH, READY, binaries};
use kubernetes_support::*;
use serde_yaml::Value;

/// Variables whose values are secrets: a manifest may only take them from a Secret.
const SECRET_VARIABLES: [&str; 8] = [
    "PGPASSWORD",
    "DATABASE_BASE_URL",
    "AMQP_URL",
    "ADMIN_AMQP_URL",
    "ADMIN_TOKEN",
    "EVENT_SIGNING_KEY",
    "EVENT_DATA_KEYS",
    "RELAY_DATABASE_URLS",
];

/// Each kustomization, rendered, with its objects.
fn rendered() -> Vec<(String, String, Vec<Value>)> {
    kustomizations()
        .into_iter()
        .map(|dir| {
            let text = render(&dir);
            let objects = objects(&text);
            (shown(&dir), text, objects)
        })
        .collect()
}

#[test]
fn every_kustomization_renders_and_passes_strict_schema_validation() {
    for (dir, text, objects) in rendered() {
        let (success, lines) = validate(&text);
        // A kind without a schema is only a warning to the validator: every object must pass.
        let passed = lines
            .iter()
            .filter(|line| line.starts_with("INFO ") && line.contains(" passed "))
            .count();
        assert!(
            success && passed == objects.len() && lines.len() == passed,
            "{dir}: {passed} of {} objects passed kubernetes-validate --strict for Kubernetes \
             {KUBERNETES_VERSION}:\n{}",
            objects.len(),
            lines.join("\n")
        );
    }
}

#[test]
fn every_variable_a_manifest_sets_is_one_its_binary_accepts_and_secrets_come_from_secrets() {
    let binaries = binaries();
    let secret = |variable: &str| {
        SECRET_VARIABLES.contains(&variable) || variable.ends_with("_DATABASE_URL")
    };
    for (dir, _, objects) in rendered() {
        // Not even shadowed by an `env` entry: a ConfigMap is no place for a secret.
        for config in kind(&objects, "ConfigMap") {
            for (key, _) in config["data"].as_mapping().into_iter().flatten() {
                let key = key.as_str().unwrap();
                assert!(
                    !secret(key),
                    "{dir}: ConfigMap {} holds {key}",
                    name(config)
                );
            }
        }
        for deployment in kind(&objects, "Deployment") {
            let program = binary(deployment);
            let Some(binary) = binaries.get(&program) else {
                panic!("{dir}: {} runs {program}, not ours", name(deployment))
            };
            for (variable, source) in environment(deployment, &objects) {
                assert!(
                    binary.accepts(&variable),
                    "{dir}: {} sets {variable}, which {program} does not take",
                    name(deployment)
                );
                assert!(
                    !secret(&variable) || matches!(source, Source::Secret(..)),
                    "{dir}: {} writes {variable} in the manifest, not from a Secret",
                    name(deployment)
                );
            }
        }
    }
}

#[test]
fn probes_reach_the_health_paths_on_the_port_each_binary_listens_on() {
    let binaries = binaries();
    for (dir, _, objects) in rendered() {
        for deployment in kind(&objects, "Deployment") {
            let (name, container) = (name(deployment), container(deployment));
            let binary = &binaries[&binary(deployment)];
            let environment = environment(deployment, &objects);
            // The default, 127.0.0.1, is out of the kubelet's reach.
            assert_eq!(
                environment.get("HTTP_HOST"),
                Some(&Source::Plain("0.0.0.0".into())),
                "{dir}: {name}"
            );
            let port = binary.port(&environment);
            let probes = [
                ("readinessProbe", binary.readiness),
                ("livenessProbe", HEALTH),
                ("startupProbe", HEALTH),
            ];
            for (probe, path) in probes {
                let get = &container[probe]["httpGet"];
                if probe == "startupProbe" && container[probe].is_null() {
                    continue;
                }
                assert_eq!(get["path"].as_str(), Some(path), "{dir}: {name} {probe}");
                let probed = container_port(container, &get["port"]);
                assert_eq!(probed, port, "{dir}: {name} {probe} port");
            }
            let thresholds = &container["livenessProbe"];
            assert!(
                thresholds["failureThreshold"].as_u64() >= Some(3),
                "{dir}: {name}: one slow answer must not restart a pod"
            );
        }
    }
}

#[tokio::test]
async fn the_probed_paths_are_served_and_a_service_is_not_ready_without_its_database() {
    use actix_web::{App, test, web};
    use shared::http::health::{Readiness, configure};
    // Every service mounts `health::configure` (`shared::service`); nothing listens on port 1.
    let pool = shared::db::build_pool(&shared::config::DatabaseSettings::new(
        "postgres://nobody@127.0.0.1:1/nothing",
        &shared::config::PoolSettings {
            pool_size: 1,
            pool_timeout: std::time::Duration::from_secs(1),
        },
    ))
    .unwrap();
    let readiness = Readiness {
        pool,
        broker_connected: Vec::new(),
    };
    let app = App::new()
        .app_data(web::Data::new(readiness))
        .configure(configure);
    let app = test::init_service(app).await;
    for (path, status) in [(HEALTH, 200), (READY, 503)] {
        let response = test::call_service(&app, test::TestRequest::get().uri(path).to_request());
        assert_eq!(response.await.status().as_u16(), status, "{path}");
    }
    // The relay's listener: /health, and no /ready (its probes use /health for both).
    let (trigger, shutdown) = shared::shutdown::Shutdown::new();
    let (port, task) = outbox_relay::metrics::serve("127.0.0.1", 0, shutdown).unwrap();
    for (path, status) in [(HEALTH, 200), (READY, 404)] {
        let response = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await;
        assert_eq!(response.unwrap().status().as_u16(), status, "relay {path}");
    }
    trigger.trigger();
    task.await.unwrap();
}

#[test]
fn every_deployment_is_replicated_budgeted_resourced_and_locked_down() {
    for (dir, _, objects) in rendered() {
        let budgets = kind(&objects, "PodDisruptionBudget");
        let services = kind(&objects, "Service");
        for deployment in kind(&objects, "Deployment") {
            let name = name(deployment);
            let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
            if dir.ends_with("base") || dir.ends_with("production") {
                let wanted = if name == "relay" { 2 } else { 3 };
                assert_eq!(replicas, wanted, "{dir}: {name} replicas");
            }
            let selector = &deployment["spec"]["selector"]["matchLabels"];
            let budget = budgets
                .iter()
                .filter(|b| &b["spec"]["selector"]["matchLabels"] == selector)
                .collect::<Vec<_>>();
            assert_eq!(budget.len(), 1, "{dir}: {name}: one disruption budget");
            assert_eq!(
                budget[0]["spec"]["maxUnavailable"].as_u64(),
                Some(1),
                "{dir}: {name}"
            );
            let serving = services
                .iter()
                .filter(|s| &s["spec"]["selector"] == selector)
                .count();
            assert_eq!(serving, 1, "{dir}: {name}: one Service");
            let container = container(deployment);
            for resource in ["cpu", "memory"] {
                let request = &container["resources"]["requests"][resource];
                assert!(!request.is_null(), "{dir}: {name} requests no {resource}");
            }
            let memory = &container["resources"]["limits"]["memory"];
            assert!(!memory.is_null(), "{dir}: {name}: no memory limit");
            let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
            assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true), "{dir}: {name}");
            let seccomp = pod["seccompProfile"]["type"].as_str();
            assert_eq!(seccomp, Some("RuntimeDefault"), "{dir}: {name}");
            let own = &container["securityContext"];
            let locked = own["allowPrivilegeEscalation"].as_bool() == Some(false)
                && own["readOnlyRootFilesystem"].as_bool() == Some(true)
                && own["capabilities"]["drop"] == Value::Sequence(vec!["ALL".into()]);
            assert!(locked, "{dir}: {name}: {own:?}");
        }
    }
}

/// The Secret keys a Deployment's key volume mounts (items of a Secret volume at EVENT_KEYS).
fn mounted_keys(deployment: &Value, directory: &str) -> BTreeSet<String> {
    let container = container(deployment);
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(directory));
    let volume_name = &mount.unwrap_or_else(|| panic!("nothing mounted at {directory}"))["name"];
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    let volume = volumes.iter().find(|v| &v["name"] == volume_name).unwrap();
    let items = volume["secret"]["items"].as_sequence();
    let items = items.expect("the key volume lists its items: a Secret mounted whole gives all");
    items
        .iter()
        .map(|item| {
            assert_eq!(item["key"], item["path"]);
            item["key"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn each_pod_holds_only_its_own_signing_key_and_connects_as_its_own_broker_identity() {
    let binaries = binaries();
    for (dir, _, objects) in rendered() {
        for deployment in kind(&objects, "Deployment") {
            let (name, binary) = (name(deployment), &binaries[&binary(deployment)]);
            let environment = environment(deployment, &objects);
            let identity = |variable: &str| match environment.get(variable) {
                Some(Source::Secret(_, key)) => key.clone(),
                other => panic!("{dir}: {name} {variable}: {other:?}"),
            };
            assert_eq!(
                identity("AMQP_URL"),
                name,
                "{dir}: {name}'s broker identity"
            );
            if environment.contains_key("ADMIN_AMQP_URL") {
                assert_eq!(identity("ADMIN_AMQP_URL"), "operator", "{dir}: {name}");
            }
            let Some(Source::Plain(directory)) = environment.get("EVENT_KEYS") else {
                assert!(!binary.keys, "{dir}: {name} is given no EVENT_KEYS");
                continue;
            };
            let mut wanted = BTreeSet::from(["verify.keys".to_owned(), "data.keys".to_owned()]);
            if binary.signs {
                wanted.insert(format!("{name}.signing.key"));
            }
            assert_eq!(mounted_keys(deployment, directory), wanted, "{dir}: {name}");
        }
    }
}

#[test]
fn production_commits_no_secret_and_dev_carries_only_the_public_development_set() {
    for (dir, _, objects) in rendered() {
        let secrets = kind(&objects, "Secret");
        if !dir.ends_with("dev") {
            let names: Vec<&str> = secrets.iter().map(|s| name(s)).collect();
            assert!(names.is_empty(), "{dir} generates Secrets: {names:?}");
            continue;
        }
        let keys = secrets
            .iter()
            .find(|s| name(s).starts_with("saga-event-keys"))
            .unwrap();
        let files = keys["data"].as_mapping().unwrap();
        assert_eq!(files.len(), 6, "{dir}");
        for (file, _) in files {
            let file = file.as_str().unwrap();
            let copy = std::fs::read_to_string(
                root()
                    .join(MANIFESTS)
                    .join("overlays/dev/dev-keys")
                    .join(file),
            );
            let development = shared::seal::settings::dev_file(file).unwrap();
            assert_eq!(
                copy.unwrap(),
                development,
                "{dir}: {file} is not the development set's"
            );
        }
    }
}

#[test]
fn every_file_of_the_manifests_is_used_by_a_kustomization() {
    let mut used: BTreeSet<PathBuf> = BTreeSet::new();
    for dir in kustomizations() {
        used.insert(dir.join("kustomization.yaml").canonicalize().unwrap());
        let (files, dirs) = referenced(&dir);
        used.extend(files);
        for named in dirs {
            assert!(
                named.join("kustomization.yaml").exists(),
                "{}",
                named.display()
            );
        }
    }
    let mut stack = vec![root().join(MANIFESTS)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let used = used.contains(&path.canonicalize().unwrap());
                assert!(used, "{} is used by no kustomization", shown(&path));
            }
        }
    }
}

//! The container deployment's API gateway, statically: the compose file's `gateway` service
//! builds the Dockerfile's nginx stage, which renders its configuration with `sagactl gateway
//! config`; it publishes the one client port, routes to every service at the port that service
//! listens on, and starts once they are healthy. The services' own ports are for operators on
//! the host only. And the image build gets every file the sources compile in.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "deploy_support/mod.rs"]
#[allow(dead_code)] // shared with deploy.rs, which uses all of it
mod deploy_support;

use std::collections::BTreeSet;
use std::path::Path;

use deploy_support::*;

/// The `GATEWAY_*` variables `sagactl gateway config` takes.
fn gateway_variables() -> BTreeSet<String> {
    let source = read("cli/src/gateway.rs");
    source
        .split("env = \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_gateway_publishes_8080_and_routes_to_every_service_at_its_port_once_healthy() {
    let services = services();
    let gateway = services.get("gateway").expect("no gateway service");
    assert_eq!(text(&gateway["build"]["target"]), "gateway");
    let env = environment(gateway);
    let known = gateway_variables();
    for var in env.keys() {
        assert!(
            known.contains(var),
            "gateway sets {var}, which sagactl does not take"
        );
    }
    let listen = &env["GATEWAY_LISTEN"];
    let (host, port) = listen.rsplit_once(':').unwrap();
    assert_eq!((host, port), ("0.0.0.0", "8080"), "{listen}");
    assert_eq!(strings(&gateway["ports"]), ["8080:8080"]);

    let listening = listening();
    let waits = depends_on(gateway);
    for service in readme_ports().keys() {
        let var = format!("GATEWAY_{}", service.to_uppercase());
        let instances = env
            .get(&var)
            .unwrap_or_else(|| panic!("gateway lacks {var}"));
        for instance in instances.split(',').map(str::trim) {
            let (host, port) = instance.rsplit_once(':').unwrap();
            assert!(services.contains_key(host), "{var} names unknown {host}");
            let (listens_on, _) = listening[host];
            assert_eq!(port, listens_on.to_string(), "{var}: {instance}");
            let condition = waits.get(host).cloned().flatten();
            assert_eq!(condition.as_deref(), Some("service_healthy"), "{host}");
        }
    }
}

#[test]
fn the_gateway_image_is_nginx_rendering_its_configuration_with_sagactl() {
    let stages = dockerfile();
    let (index, stage) = stages
        .iter()
        .enumerate()
        .find(|(_, s)| s.name.as_deref() == Some("gateway"))
        .expect("no gateway stage");
    assert!(stage.base.starts_with("nginx:"), "{}", stage.base);
    // sagactl is built on Debian (glibc): an Alpine nginx could not run it.
    assert!(!stage.base.contains("alpine"), "{}", stage.base);
    assert!(
        index < stages.len() - 1,
        "the services' image must stay the last stage"
    );
    let copies_sagactl = stage
        .instructions
        .iter()
        .any(|(k, a)| k == "COPY" && a.contains("--from=builder") && a.contains("/sagactl"));
    assert!(copies_sagactl, "{:?}", stage.instructions);
    let cmd = stage.instructions.iter().rev().find(|(k, _)| k == "CMD");
    let cmd = &cmd.expect("no CMD").1;
    let config = cmd.find("sagactl gateway config --out").expect(cmd);
    let nginx = cmd.find("exec nginx").expect(cmd);
    assert!(config < nginx, "{cmd}");
    let expose = stage.instructions.iter().find(|(k, _)| k == "EXPOSE");
    assert_eq!(expose.map(|(_, a)| a.as_str()), Some("8080"));
}

#[test]
fn only_the_gateway_publishes_a_service_port_beyond_the_hosts_loopback_interface() {
    for (name, (_, service)) in ours() {
        for published in strings(&service["ports"]) {
            assert!(
                published.starts_with("127.0.0.1:"),
                "{name} publishes {published} to every interface: clients use the gateway"
            );
        }
    }
}

/// Whether `.dockerignore` leaves `path` (relative to the repository) out of the build context:
/// the last pattern that matches decides, `!` re-includes.
fn dockerignored(rules: &str, path: &str) -> bool {
    let mut ignored = false;
    for rule in rules.lines().map(str::trim) {
        if rule.is_empty() || rule.starts_with('#') {
            continue;
        }
        let (include, pattern) = match rule.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, rule),
        };
        let pattern = pattern.trim_end_matches('/');
        let matches = match pattern.strip_prefix("**/*") {
            Some(suffix) => path.ends_with(suffix),
            None => path == pattern || path.starts_with(&format!("{pattern}/")),
        };
        if matches {
            ignored = !include;
        }
    }
    ignored
}

/// Every file an `include_str!` or `include_bytes!` of `dir`'s Rust sources names, relative to
/// the repository.
fn included_files(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            included_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            for macro_ in ["include_str!(\"", "include_bytes!(\""] {
                for rest in source.split(macro_).skip(1) {
                    let target = path.parent().unwrap().join(rest.split('"').next().unwrap());
                    let target = target.canonicalize().unwrap();
                    let relative = target.strip_prefix(root().canonicalize().unwrap()).unwrap();
                    found.push(relative.to_str().unwrap().to_owned());
                }
            }
        }
    }
}

#[test]
fn the_image_build_context_holds_every_file_the_binaries_compile_in() {
    let rules = read(".dockerignore");
    assert!(dockerignored(
        &rules,
        "deploy/kubernetes/base/kustomization.yaml"
    ));
    let mut files = Vec::new();
    for dir in ["shared/src", "outbox-relay/src", "services", "cli/src"] {
        included_files(&root().join(dir), &mut files);
    }
    assert!(
        files.contains(&"deploy/gateway/nginx.conf.template".to_owned()),
        "{files:?}"
    );
    for file in files {
        assert!(
            !dockerignored(&rules, &file),
            ".dockerignore drops {file}, which a binary compiles in"
        );
    }
}

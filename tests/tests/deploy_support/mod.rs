//! Parsers for the deployment files and the workspace facts they are checked against (used by
//! `deploy.rs`): compose services, Cargo manifests, the README's Configuration table and a small
//! Dockerfile parser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

pub fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|err| panic!("{path} is not YAML: {err}"))
}

pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The compose services by name.
pub fn services() -> BTreeMap<String, Value> {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"]
        .as_mapping()
        .expect("compose has no services");
    services
        .iter()
        .map(|(name, service)| (text(name), service.clone()))
        .collect()
}

/// The program a service's `command` runs.
pub fn command(service: &Value) -> Option<String> {
    match &service["command"] {
        Value::Sequence(words) => words.first().map(text),
        Value::String(line) => line.split_whitespace().next().map(str::to_owned),
        _ => None,
    }
}

/// A service's environment, from either the mapping or the `KEY=value` list form.
pub fn environment(service: &Value) -> BTreeMap<String, String> {
    environment_with(service, &BTreeMap::new())
}

/// `service`'s environment as compose interpolates it when the shell sets `shell`:
/// `${NAME:-default}` is `shell[NAME]` if set, else `default`.
pub fn environment_with(service: &Value, shell: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    environment_raw(service)
        .into_iter()
        .map(|(k, v)| (k, interpolate(&v, shell)))
        .collect()
}

fn interpolate(value: &str, shell: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(shell.get(name).copied().unwrap_or(default));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn environment_raw(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(vars) => vars.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Value::Sequence(vars) => vars
            .iter()
            .map(|var| {
                let var = text(var);
                let (k, v) = var.split_once('=').unwrap_or((&var, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `depends_on` names with their conditions (`None` in the list form).
pub fn depends_on(service: &Value) -> BTreeMap<String, Option<String>> {
    match &service["depends_on"] {
        Value::Sequence(names) => names.iter().map(|n| (text(n), None)).collect(),
        Value::Mapping(deps) => deps
            .iter()
            .map(|(n, d)| (text(n), d["condition"].as_str().map(str::to_owned)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Bind mounts (source relative to the repository, target) of a service.
pub fn mounts(service: &Value) -> Vec<(String, String)> {
    let volumes = service["volumes"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    volumes
        .iter()
        .filter_map(|volume| match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            long => Some((text(&long["source"]), text(&long["target"]))),
        })
        .filter(|(source, _)| source.starts_with("./"))
        .collect()
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().map(text).collect())
        .unwrap_or_default()
}

/// Every binary of the workspace, with its package: `[[bin]]` names, else the package name of a
/// package with `src/main.rs`.
pub fn workspace_binaries() -> BTreeMap<String, String> {
    let manifest = read("Cargo.toml");
    let members = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .unwrap();
    let mut dirs = Vec::new();
    for member in members.split('"').skip(1).step_by(2) {
        match member.strip_suffix("/*") {
            Some(parent) => {
                for entry in std::fs::read_dir(root().join(parent)).unwrap() {
                    dirs.push(entry.unwrap().path());
                }
            }
            None => dirs.push(root().join(member)),
        }
    }
    let mut binaries = BTreeMap::new();
    for dir in dirs
        .into_iter()
        .filter(|dir| dir.join("Cargo.toml").exists())
    {
        let (mut section, mut package, mut bins) = (String::new(), String::new(), Vec::new());
        for line in std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .lines()
        {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_owned();
            } else if let Some(value) = line.strip_prefix("name = ") {
                let value = value.trim_matches('"').to_owned();
                match section.as_str() {
                    "[package]" => package = value,
                    "[[bin]]" => bins.push(value),
                    _ => {}
                }
            }
        }
        if bins.is_empty() && dir.join("src/main.rs").exists() {
            bins.push(package.clone());
        }
        binaries.extend(bins.into_iter().map(|bin| (bin, package.clone())));
    }
    binaries
}

/// Compose services running one of our binaries: name → (binary, service).
pub fn ours() -> BTreeMap<String, (String, Value)> {
    let binaries = workspace_binaries();
    services()
        .into_iter()
        .filter_map(|(name, service)| {
            let program = command(&service).filter(|p| binaries.contains_key(p))?;
            Some((name, (program, service)))
        })
        .collect()
}

/// The README's Configuration table: variable → default column.
pub fn readme_config() -> BTreeMap<String, String> {
    let readme = read("README.md");
    let section = readme
        .split("\n## Configuration")
        .nth(1)
        .expect("no Configuration");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// The services' default ports from the README (`{NAME}_PORT`: "order 8081, product 8082, …").
pub fn readme_ports() -> BTreeMap<String, u16> {
    let config = readme_config();
    let ports = config
        .get("{NAME}_PORT")
        .expect("README documents no {NAME}_PORT");
    ports
        .split(',')
        .map(|pair| {
            let (name, port) = pair.trim().split_once(' ').unwrap();
            (name.to_owned(), port.parse().unwrap())
        })
        .collect()
}

/// The relay's metrics port: the default of `RELAY_METRICS_PORT` in its settings.
pub fn relay_metrics_port() -> u16 {
    let config = read("outbox-relay/src/config.rs");
    let (_, rest) = config.split_once("env = \"RELAY_METRICS_PORT\"").unwrap();
    let (_, rest) = rest.split_once("default_value = \"").unwrap();
    rest.split('"').next().unwrap().parse().unwrap()
}

/// Our services with the port each listens on and its health path.
pub fn listening() -> BTreeMap<String, (u16, &'static str)> {
    let ports = readme_ports();
    ours()
        .into_iter()
        .map(
            |(name, (binary, _))| match binary.strip_suffix("-service") {
                Some(service) => (name, (ports[service], "/ready")),
                None if binary == "outbox-relay" => (name, (relay_metrics_port(), "/health")),
                None => panic!("{name} runs {binary}, which serves no metrics port"),
            },
        )
        .collect()
}

/// The host of a URL (`scheme://user:pass@host:port/path`).
pub fn host(url: &str) -> &str {
    let authority = url.split_once("://").unwrap().1.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    host_port.split(':').next().unwrap()
}

/// One Dockerfile stage: base image, name, instructions (keyword, arguments).
#[derive(Debug)]
pub struct Stage {
    pub base: String,
    pub name: Option<String>,
    pub instructions: Vec<(String, String)>,
}

pub fn dockerfile() -> Vec<Stage> {
    const KEYWORDS: &[&str] = &[
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "HEALTHCHECK",
        "LABEL",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    let (mut lines, mut current) = (Vec::new(), String::new());
    for line in read("Dockerfile").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => lines.push(std::mem::take(&mut current) + line),
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for line in lines {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap();
        let keyword = keyword.to_uppercase();
        if keyword == "FROM" {
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_] => None,
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => panic!("bad FROM: {line}"),
            };
            stages.push(Stage {
                base: words[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else {
            assert!(
                KEYWORDS.contains(&keyword.as_str()),
                "unknown instruction: {line}"
            );
            let stage = stages
                .last_mut()
                .unwrap_or_else(|| panic!("{line} before FROM"));
            stage.instructions.push((keyword, rest.trim().to_owned()));
        }
    }
    stages
}

/// What the final stage copies from earlier stages: file name → (source stage, destination).
/// Panics on a `COPY --from` that names no earlier stage, in any stage.
pub fn copies_into_final_stage(stages: &[Stage]) -> BTreeMap<String, (usize, String)> {
    let mut copied = BTreeMap::new();
    for (index, stage) in stages.iter().enumerate() {
        for (_, args) in stage.instructions.iter().filter(|(k, _)| k == "COPY") {
            let words: Vec<&str> = args.split_whitespace().collect();
            let Some(from) = words.iter().find_map(|w| w.strip_prefix("--from=")) else {
                continue;
            };
            let source = stages[..index]
                .iter()
                .position(|s| s.name.as_deref() == Some(from));
            let source = source.or_else(|| from.parse().ok().filter(|&i: &usize| i < index));
            let source = source.unwrap_or_else(|| panic!("COPY --from={from}: no earlier stage"));
            if index == stages.len() - 1 {
                let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let (destination, sources) = paths.split_last().unwrap();
                for path in sources {
                    let file = path.rsplit('/').next().unwrap().to_owned();
                    copied.insert(file, (source, (*destination).to_owned()));
                }
            }
        }
    }
    copied
}

/// The URLs in `value`, one per host: a comma-separated list of URLs, where a piece without a
/// scheme is one more host of the URL before it (an `AMQP_URL` naming a cluster's nodes).
pub fn urls(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in value.split(',').map(str::trim) {
        if piece.contains("://") {
            out.push(piece.to_owned());
        } else if let Some(last) = out.last() {
            let scheme = last.split_once("://").map_or("amqp", |(scheme, _)| scheme);
            out.push(format!("{scheme}://{piece}"));
        }
    }
    out
}

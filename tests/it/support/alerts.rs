//! Helpers for the alert tests: an HTTP receiver on 127.0.0.1 that records every request
//! and answers from a script (webhook-, Slack- and PagerDuty-shaped endpoints alike), an
//! SMTP sink (Python `aiosmtpd`, a real SMTP server), and signature verification with the
//! Python `standardwebhooks` package, an implementation independent of ours.
//!
//! CI needs: `pip install standardwebhooks aiosmtpd`.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use intercom_sim::Simulator;
use intercom_sspm::crypto::Keyring;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::daemon::Daemon;

#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// 429 with `Retry-After: secs`.
    TooMany(u64),
}

#[derive(Default)]
struct RecvState {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<VecDeque<Reply>>,
    hang: AtomicBool,
}

/// An HTTP receiver: records each request, then answers the next scripted reply (200
/// once the script is empty). While `hang` is set it records and never answers.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<RecvState>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<RecvState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hit = Hit {
        at: Instant::now(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    };
    state.hits.lock().unwrap().push(hit);
    if state.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let reply = state.script.lock().unwrap().pop_front();
    match reply {
        None => (StatusCode::OK, "ok").into_response(),
        Some(Reply::Status(s)) => (StatusCode::from_u16(s).unwrap(), "scripted").into_response(),
        Some(Reply::TooMany(secs)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(RecvState::default());
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn script(&self, replies: &[Reply]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(replies.iter().copied());
    }

    pub fn hang(&self, on: bool) {
        self.state.hang.store(on, Ordering::SeqCst);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    /// Waits until `path` has at least `n` hits; returns them.
    pub async fn wait_hits(&self, path: &str, n: usize, within: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + within;
        loop {
            let hits = self.hits_on(path);
            if hits.len() >= n || Instant::now() >= deadline {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SMTP_SINK: &str = r#"
import os, sys, time
from aiosmtpd.controller import Controller
out = sys.argv[2]
class Sink:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(out))
        with open(os.path.join(out, "%04d.eml" % n), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        return "250 Message accepted"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// A real SMTP server (Python aiosmtpd) writing each message to a directory.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::free_port();
        let mut child = Command::new("python3")
            .args(["-c", SMTP_SINK, &port.to_string()])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (pip install aiosmtpd)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd sink started (pip install aiosmtpd)"
        );
        SmtpSink { port, dir, child }
    }

    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).to_string())
            .collect()
    }

    pub async fn wait_messages(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() >= deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, headers = sys.argv[1], json.loads(sys.argv[2])
body = sys.stdin.buffer.read()
try:
    Webhook(secret).verify(body, headers)
    print("verified")
except Exception as e:
    print("rejected: %s" % e)
"#;

/// Verifies a delivery with the `standardwebhooks` Python package: "verified" or "rejected: ...".
pub fn verify_with_standardwebhooks(secret: &str, hit: &Hit, body: &[u8]) -> String {
    use std::io::Write;
    let headers = json!({
        "webhook-id": hit.header("webhook-id"),
        "webhook-timestamp": hit.header("webhook-timestamp"),
        "webhook-signature": hit.header("webhook-signature"),
    });
    let mut child = Command::new("python3")
        .args(["-c", VERIFY, secret, &headers.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (pip install standardwebhooks)");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Test settings for daemons that deliver alerts: fast polls, short leases and backoff.
pub const NOTIFY_ENV: &[(&str, &str)] = &[
    ("SSPM__NOTIFY__POLL_INTERVAL", "100ms"),
    ("SSPM__NOTIFY__REQUEST_TIMEOUT", "1s"),
    ("SSPM__NOTIFY__CONNECT_TIMEOUT", "500ms"),
    ("SSPM__NOTIFY__LEASE", "3s"),
    ("SSPM__NOTIFY__RETRY_BASE_DELAY", "400ms"),
    ("SSPM__NOTIFY__MAX_BACKOFF", "5s"),
    ("SSPM__NOTIFY__SLACK_PACE", "200ms"),
];

/// A database, a simulator and a key shared by the alert tests.
pub struct AlertWorld {
    pub pool: PgPool,
    pub sim: Simulator,
    pub keyring: Keyring,
    pub key: String,
    pub db_url: String,
}

pub const TOKEN: &str = "tok_alerts_acme_0001";

/// A workspace with a high finding that can be fixed (identity verification off) and
/// a critical one (six failed logins from one IP, then a success from it).
pub fn risky_workspace(id_code: &str, token: &str) -> serde_json::Value {
    let mut w = crate::support::sim::workspace_json(
        id_code,
        "us",
        token,
        &["read_admins", "read_admin_activity_logs"],
    );
    w["identity_verification"] = json!(false);
    let events = w["events"].as_array_mut().unwrap();
    for i in 0..6 {
        events.push(
            json!({ "id": format!("{id_code}-f{i}"), "activity_type": "admin_login_failure",
            "ago": format!("{}m", 300 - i * 3), "performed_by": "2", "ip": "203.0.113.9" }),
        );
    }
    events.push(json!({ "id": format!("{id_code}-fs"), "activity_type": "admin_login_success",
        "ago": "4h", "performed_by": "2", "ip": "203.0.113.9", "metadata": { "sign_in_method": "google" } }));
    w
}

impl AlertWorld {
    pub async fn new(pool: &PgPool, workspaces: Vec<serde_json::Value>) -> AlertWorld {
        let sim = crate::support::sim::start_json(json!({ "workspaces": workspaces })).await;
        let test_key = crate::support::TestKey::generate();
        let (keyring, key) = (test_key.ring(), test_key.b64.clone());
        AlertWorld {
            pool: pool.clone(),
            sim,
            keyring,
            key,
            db_url: crate::support::db::database_url(pool),
        }
    }

    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = crate::support::sim::sim_env(Some(&self.sim));
        env.push(("DATABASE_URL".into(), self.db_url.clone()));
        env.push(("SSPM__SECURITY__TOKEN_KEY".into(), self.key.clone()));
        for (k, v) in extra {
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// Runs `intercom-sspm ARGS`; panics unless it succeeds; returns stdout.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = crate::support::cli::run_cli(args, &self.env(&[]), stdin).await;
        let (stdout, stderr) = crate::support::cli::text(&out);
        assert!(out.status.success(), "{args:?} failed: {stdout}\n{stderr}");
        stdout
    }

    pub fn daemon(&self, name: &str, extra: &[(&str, &str)]) -> Daemon {
        let mut all: Vec<(&str, &str)> = NOTIFY_ENV.to_vec();
        all.extend_from_slice(extra);
        Daemon::spawn(name, &self.db_url, &self.sim, &self.key, &all)
    }

    pub async fn onboard(&self, name: &str, token: &str) -> Uuid {
        crate::support::db::onboard(
            &self.pool,
            &self.keyring,
            &crate::support::db::Onboard::new(name).schedule("6h"),
            token,
        )
        .await
        .id
    }

    /// Adds a webhook channel by the CLI; returns its signing secret.
    pub async fn add_webhook(&self, name: &str, url: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "channel", "add", "--name", name, "--kind", "webhook", "--url", url,
        ];
        args.extend_from_slice(extra);
        let out = self.cli(&args, None).await;
        out.lines()
            .find(|l| l.starts_with("whsec_"))
            .unwrap_or_else(|| panic!("signing secret printed: {out}"))
            .to_string()
    }
}

pub async fn outbox_count(pool: &PgPool, filter: &str) -> i64 {
    crate::support::db::count(
        pool,
        &format!("SELECT count(*) FROM sspm.notification_outbox WHERE {filter}"),
    )
    .await
}

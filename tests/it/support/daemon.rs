//! `intercom-sspm run` as real processes (each with its own probe port and replica id),
//! the [`World`] methods that spawn and observe them, and a TCP proxy that can cut the
//! database away.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intercom_sim::Simulator;
use intercom_sspm::db::instances;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::db::{count, wait_count};
use super::World;

/// How long a test daemon may take to become ready.
pub const READY: Duration = Duration::from_secs(30);

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
    let mut env = super::sim::sim_env(Some(sim));
    env.push(("DATABASE_URL".into(), db_url.into()));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key_b64.into()));
    env.push(("SSPM__SERVER__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("SSPM_REPLICA_ID".into(), replica.into()));
    for (k, v) in BASE_ENV.iter().chain(extra) {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// Where Debian (and most distributions) put libfaketime's preload library.
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// Environment entries that shift a process's wall clock by `offset` (libfaketime syntax:
/// "-30s" is 30 seconds behind), for a replica whose clock is skewed. Monotonic clocks
/// (timers, timeouts) are left alone. Needs the Debian package `faketime` (`.ci/run`
/// installs it).
pub fn skewed_clock_env(offset: &str) -> Vec<(String, String)> {
    let lib = LIBFAKETIME
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("libfaketime not found (looked in {LIBFAKETIME:?}): install the `faketime` package (apt-get install faketime), as .ci/run does")
        });
    vec![
        ("LD_PRELOAD".into(), (*lib).into()),
        ("FAKETIME".into(), offset.into()),
        ("DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
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

    /// The time stamp of the daemon's first log line: the process's own idea of the time
    /// (skewed under [`skewed_clock_env`]).
    pub fn first_log_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let logs = self.logs();
        let stamp = logs.lines().next()?.split_whitespace().next()?;
        stamp.parse().ok()
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

/// Sends SIGTERM and expects exit code 0 within `within`.
pub async fn sigterm_and_expect_clean_exit(d: &mut Daemon, within: Duration) {
    d.signal("TERM");
    let status = d.wait_exit(within).await;
    assert_eq!(
        status.code(),
        Some(0),
        "daemon {} exit status {status}:\n{}",
        d.name,
        d.logs()
    );
}

/// Daemons of a [`World`], and what they leave in its database.
impl World {
    /// Spawns daemon `name` (its replica id) against the world, with `extra` settings.
    pub fn daemon(&self, name: &str, extra: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(name, &self.db_url, &self.sim, &self.key.b64, extra)
    }

    /// The environment of daemon `name`, reaching Postgres at `db_url` (the world's own,
    /// or a [`PgProxy`]'s), for [`Daemon::spawn_with_env`].
    pub fn daemon_env(
        &self,
        db_url: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        daemon_env(db_url, &self.sim, &self.key.b64, name, extra)
    }

    /// Makes every enabled instance due now and wakes the daemons.
    pub async fn force_all_due(&self) {
        sqlx::query("UPDATE sspm.instances SET next_scan_at = now() WHERE lease_token IS NULL")
            .execute(&self.pool)
            .await
            .unwrap();
        instances::notify_wakeup(&self.pool).await.unwrap();
    }

    pub async fn succeeded(&self, id: Uuid) -> i64 {
        count(&self.pool, &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'succeeded'")).await
    }

    pub async fn wait_succeeded(&self, id: Uuid, at_least: i64, within: Duration) -> i64 {
        wait_count(
            &self.pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'succeeded'"),
            at_least,
            within,
        )
        .await
    }

    /// Instances with fewer than `n` succeeded scans.
    pub async fn short_of(&self, n: i64) -> i64 {
        count(
            &self.pool,
            &format!(
                "SELECT count(*) FROM sspm.instances i WHERE (SELECT count(*) FROM sspm.scans s
                   WHERE s.instance_id = i.id AND s.status = 'succeeded') < {n}"
            ),
        )
        .await
    }

    pub async fn wait_all_succeeded(&self, n: i64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.short_of(n).await > 0 {
            assert!(
                Instant::now() < deadline,
                "{} instances still lack {n} succeeded scans",
                self.short_of(n).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn running_scans(&self) -> i64 {
        count(
            &self.pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
        )
        .await
    }

    pub async fn held_leases(&self) -> i64 {
        count(
            &self.pool,
            "SELECT count(*) FROM sspm.instances WHERE lease_token IS NOT NULL",
        )
        .await
    }
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

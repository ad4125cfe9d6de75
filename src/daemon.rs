//! The daemon's wiring, apart from the CLI (which keeps signal handling and sd_notify):
//!
//! 1. [`Listeners::bind`] binds every configured socket (port 0 works: read the address
//!    back with [`Daemon::local_addrs`]);
//! 2. [`Daemon::build`] installs the metrics recorder and starts serving every listener, so
//!    `/livez` answers while the database is still coming up;
//! 3. [`Daemon::run_until_stopped`] connects and migrates (retrying while the database is
//!    unreachable), starts the scheduler, housekeeping, the database health monitor and
//!    every registered [`Worker`], reports ready, and on shutdown stops claiming, drains,
//!    stops the workers, and stops the listeners last (so `/readyz` says 503 and
//!    `/metrics` keeps scraping during the drain).
//!
//! Adding a listener: a [`ListenerRole`] variant (its setting and its router). Adding a
//! background worker: [`Daemon::with_worker`]; it gets the pool and a stop token, and the
//! shutdown waits for it (bounded by `shutdown.drain_timeout`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::Settings;
use crate::crypto::{CryptoError, Keyring};
use crate::intercom::IntercomClient;
use crate::scan::Scanner;
use crate::scheduler::{housekeeping, Scheduler, SchedulerState};
use crate::server::{self, AppState};

/// Longest pause between start-up connection attempts.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);
/// A health query slower than this counts as "database unreachable".
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// What each listening socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerRole {
    /// `/livez`, `/readyz`, `/metrics` on `server.listen`.
    Probes,
}

impl ListenerRole {
    pub fn name(self) -> &'static str {
        match self {
            ListenerRole::Probes => "probes",
        }
    }

    /// The setting that names its address, for error messages.
    pub fn setting(self) -> &'static str {
        match self {
            ListenerRole::Probes => "server.listen",
        }
    }

    fn router(self, app: &Arc<AppState>) -> axum::Router {
        match self {
            ListenerRole::Probes => server::router(Arc::clone(app)),
        }
    }
}

/// The daemon's bound sockets, by role.
pub struct Listeners(Vec<(ListenerRole, TcpListener)>);

impl Listeners {
    /// Binds every socket the settings ask for.
    pub async fn bind(settings: &Settings) -> anyhow::Result<Listeners> {
        let probes = TcpListener::bind(&settings.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} = {}",
                    ListenerRole::Probes.setting(),
                    settings.server.listen
                )
            })?;
        Ok(Listeners(vec![(ListenerRole::Probes, probes)]))
    }

    /// Already bound sockets (tests bind port 0 themselves).
    pub fn from_bound(listeners: Vec<(ListenerRole, TcpListener)>) -> Listeners {
        Listeners(listeners)
    }
}

/// What a background worker gets: the pool, the settings, this replica's id, and a
/// token cancelled when the daemon stops (the worker must then return promptly).
#[derive(Clone)]
pub struct WorkerContext {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// The token keyring, when one is configured (channel secrets are sealed with it).
    pub keyring: Option<Arc<Keyring>>,
    pub replica: String,
    pub stop: CancellationToken,
}

/// A background task started once the database is ready.
pub type Worker =
    Box<dyn FnOnce(WorkerContext) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send>;

/// The signals the CLI turns into a stop: `drain` (first SIGTERM/SIGINT: stop claiming,
/// let running scans finish) and `force` (second signal: cut the drain short).
#[derive(Clone, Default)]
pub struct Shutdown {
    pub drain: CancellationToken,
    pub force: CancellationToken,
}

pub struct Daemon {
    settings: Arc<Settings>,
    replica: String,
    app: Arc<AppState>,
    state: Arc<SchedulerState>,
    keyring: Option<Arc<Keyring>>,
    client: IntercomClient,
    servers: Vec<(ListenerRole, SocketAddr, JoinHandle<std::io::Result<()>>)>,
    servers_stop: CancellationToken,
    workers: Vec<(&'static str, Worker)>,
}

impl Daemon {
    /// Installs the metrics recorder, checks the keyring and client settings, and starts
    /// serving every listener. `shutdown.drain` is what `/readyz` reports as draining.
    pub async fn build(
        settings: Settings,
        listeners: Listeners,
        replica: String,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Daemon> {
        let settings = Arc::new(settings);
        let metrics =
            crate::metrics::install().context("installing the Prometheus metrics recorder")?;
        let keyring = match Keyring::from_settings(&settings.security) {
            Ok(k) => Some(Arc::new(k)),
            Err(CryptoError::MissingKey) => {
                warn!("no token key configured (security.token_key or token_key_file): instances with sealed tokens will fail to scan; token references still work");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let client =
            IntercomClient::new(&settings.intercom).context("building the Intercom client")?;
        let state = Arc::new(SchedulerState::default());
        let app = Arc::new(AppState::new(
            Arc::clone(&state),
            shutdown.drain.clone(),
            Some(metrics),
        ));
        let servers_stop = CancellationToken::new();
        let mut servers = Vec::new();
        for (role, listener) in listeners.0 {
            let addr = listener.local_addr()?;
            // Tests read the address back from this line when they bind port 0.
            info!(
                listener = role.name(),
                "{} listening on http://{addr}",
                role.name()
            );
            let task = tokio::spawn(server::serve_router(
                listener,
                role.router(&app),
                servers_stop.clone(),
            ));
            servers.push((role, addr, task));
        }
        Ok(Daemon {
            settings,
            replica,
            app,
            state,
            keyring,
            client,
            servers,
            servers_stop,
            workers: Vec::new(),
        })
    }

    /// The token keys in use, for the start-up log: "current K1, previous K0", or "none".
    pub fn key_summary(&self) -> String {
        match &self.keyring {
            None => "none".into(),
            Some(ring) => {
                let previous = ring.previous_ids().collect::<Vec<_>>();
                if previous.is_empty() {
                    format!("current {}", ring.current_id())
                } else {
                    format!(
                        "current {}, previous {}",
                        ring.current_id(),
                        previous.join(" ")
                    )
                }
            }
        }
    }

    /// The bound address of each listener.
    pub fn local_addrs(&self) -> Vec<(ListenerRole, SocketAddr)> {
        self.servers
            .iter()
            .map(|(role, addr, _)| (*role, *addr))
            .collect()
    }

    /// Registers a background worker, started once the database is ready.
    pub fn with_worker(mut self, name: &'static str, worker: Worker) -> Self {
        self.workers.push((name, worker));
        self
    }

    /// Runs until `shutdown.drain` fires and the drain ends; `on_ready` is called once
    /// the database is ready and claims start (the CLI sends READY=1 there).
    pub async fn run_until_stopped(
        self,
        shutdown: Shutdown,
        on_ready: impl FnOnce() + Send,
    ) -> anyhow::Result<()> {
        let Some(pool) = connect_and_migrate(&self.settings, &shutdown.drain).await? else {
            info!("stopped before the database was ready");
            self.stop_servers().await;
            return Ok(());
        };
        self.app.migrated.store(true, Ordering::Relaxed);
        self.state.db_ok.store(true, Ordering::Relaxed);

        let scanner = Scanner {
            pool: pool.clone(),
            client: self.client.clone(),
            keyring: self.keyring.clone(),
            settings: Arc::clone(&self.settings),
            replica: self.replica.clone(),
        };
        let scheduler = Scheduler::new(scanner, Arc::clone(&self.state));
        let waker = scheduler.waker();
        let hard_stop = scheduler.hard_stop_token();
        let force = shutdown.force.clone();
        tokio::spawn(async move {
            force.cancelled().await;
            hard_stop.cancel();
        });

        let mut cron = housekeeping::start(
            pool.clone(),
            Arc::clone(&self.settings),
            self.replica.clone(),
            housekeeping::Plan::default(),
        )
        .await
        .context("starting the housekeeping jobs")?;

        // Background tasks that end when `workers_stop` is cancelled, after the drain.
        let workers_stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(health_monitor(
            pool.clone(),
            Arc::clone(&self.state),
            waker,
            monitor_interval(&self.settings),
            workers_stop.clone(),
        ));
        let context = WorkerContext {
            pool: pool.clone(),
            settings: Arc::clone(&self.settings),
            keyring: self.keyring.clone(),
            replica: self.replica.clone(),
            stop: workers_stop.clone(),
        };
        for (name, worker) in self.workers {
            debug!(worker = name, "starting");
            tracker.spawn(worker(context.clone()));
        }
        tracker.close();

        on_ready();
        info!("ready: claiming due instances");
        scheduler.run(shutdown.drain.clone()).await;

        if let Err(e) = cron.shutdown().await {
            debug!(error = %e, "housekeeping scheduler shutdown");
        }
        workers_stop.cancel();
        if tokio::time::timeout(self.settings.shutdown.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            warn!("background workers did not stop within shutdown.drain_timeout");
        }
        let servers_stop = self.servers_stop;
        stop_servers(servers_stop, self.servers).await;
        pool.close().await;
        info!("stopped");
        Ok(())
    }

    async fn stop_servers(self) {
        stop_servers(self.servers_stop, self.servers).await;
    }
}

async fn stop_servers(
    stop: CancellationToken,
    servers: Vec<(ListenerRole, SocketAddr, JoinHandle<std::io::Result<()>>)>,
) {
    stop.cancel();
    for (role, _, task) in servers {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(listener = role.name(), error = %e, "HTTP server ended with an error")
            }
            Err(e) => warn!(listener = role.name(), error = %e, "HTTP server task failed"),
        }
    }
}

/// `SSPM_REPLICA_ID` when set, else `hostname:pid` (the pod name under Kubernetes). It
/// names leases and scan rows, so two processes must never share one.
pub fn replica_id() -> String {
    if let Ok(id) = std::env::var("SSPM_REPLICA_ID") {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_string();
        }
    }
    // /proc/sys is hidden under the unit's ProcSubset=pid; /etc/hostname (the pod name
    // under Kubernetes) stays readable there.
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Connects and migrates (under sqlx's advisory lock, so replicas starting together
/// apply each migration once). While the database is unreachable it retries with backoff;
/// an error retrying cannot fix (bad URL, a migration that fails, a schema newer than this
/// build) stops the daemon. None when a signal arrived first.
async fn connect_and_migrate(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<PgPool>> {
    let mut delay = Duration::from_secs(1);
    loop {
        let outcome = match crate::db::connect(settings).await {
            Ok(pool) => match crate::db::migrate(&pool).await {
                Ok(()) => return Ok(Some(pool)),
                Err(e) => {
                    pool.close().await;
                    e
                }
            },
            Err(e) => e,
        };
        match (outcome.transient(), anyhow::Error::from(outcome)) {
            (false, e) => return Err(e),
            (true, e) => {
                error!(error = %format!("{e:#}"), retry_in = ?delay, "database not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_CONNECT_BACKOFF);
            }
        }
    }
}

/// How often the gauges (and with them the database health) are refreshed: as often as
/// the scheduler polls, within 1 s..15 s.
fn monitor_interval(settings: &Settings) -> Duration {
    settings
        .scheduler
        .poll_interval
        .clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Refreshes the fleet gauges; their success or failure is the database health that
/// `/readyz` reports. It uses a connection of its own, outside the pool: a pool busy with
/// scans must not make a healthy replica look unready, and a fresh connect proves the
/// server is reachable. When the database comes back it wakes the claim loop, which may
/// be in a long backoff.
async fn health_monitor(
    pool: PgPool,
    state: Arc<SchedulerState>,
    wake: Arc<tokio::sync::Notify>,
    every: Duration,
    stop: CancellationToken,
) {
    let options = pool.connect_options();
    let mut conn: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let probe = async {
            if conn.is_none() {
                conn = Some(options.connect().await?);
            }
            match conn.as_mut() {
                Some(c) => crate::metrics::refresh_gauges(c).await,
                None => Ok(()),
            }
        };
        let ok = match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(error = %e, "database health query failed");
                false
            }
            Err(_) => {
                debug!("database health query timed out");
                false
            }
        };
        if !ok {
            // Reconnect next time rather than reuse a connection in an unknown state.
            conn = None;
        }
        let was_ok = state.db_ok.swap(ok, Ordering::Relaxed);
        match (was_ok, ok) {
            (true, false) => {
                warn!("database unreachable: /readyz reports 503 until it answers again")
            }
            (false, true) => {
                info!("database reachable again; resuming claims");
                wake.notify_one();
            }
            _ => {}
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

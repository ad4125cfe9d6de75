//! `intercom_sspm::daemon` in process: listeners bound on port 0 report their address,
//! serve at once, and registered workers start with the database and stop with the drain.
//! (Only this test installs the process-wide metrics recorder.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use intercom_sspm::daemon::{Daemon, ListenerRole, Listeners, Shutdown};
use sqlx::PgPool;

use crate::support::{self, db};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_serves_port_zero_listeners_and_drains_its_workers(pool: PgPool) {
    let url = db::database_url(&pool);
    let settings = support::settings(
        None,
        &[
            ("DATABASE_URL", url.as_str()),
            ("SSPM__SCHEDULER__POLL_INTERVAL", "200ms"),
        ],
    );
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listeners = Listeners::from_bound(vec![(ListenerRole::Probes, socket)]);
    let shutdown = Shutdown::default();
    let saw_pool = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let (saw, done) = (Arc::clone(&saw_pool), Arc::clone(&stopped));
    let daemon = Daemon::build(settings, listeners, "wiring-test".into(), &shutdown)
        .await
        .expect("the daemon builds")
        .with_worker(
            "probe-worker",
            Box::new(move |ctx| {
                Box::pin(async move {
                    let one: i32 = sqlx::query_scalar("SELECT 1")
                        .fetch_one(&ctx.pool)
                        .await
                        .unwrap();
                    saw.store(one == 1, Ordering::SeqCst);
                    ctx.stop.cancelled().await;
                    done.store(true, Ordering::SeqCst);
                })
            }),
        );
    let addrs = daemon.local_addrs();
    assert_eq!(addrs.len(), 1);
    let (role, addr) = addrs[0];
    assert_eq!(role, ListenerRole::Probes);
    assert_ne!(
        addr.port(),
        0,
        "the bound port is read back, not the requested 0"
    );

    // /livez answers before run_until_stopped has even connected to the database.
    let livez = reqwest::get(format!("http://{addr}/livez")).await.unwrap();
    assert_eq!(livez.status(), 200);

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(daemon.run_until_stopped(shutdown.clone(), move || {
        let _ = ready_tx.send(());
    }));
    tokio::time::timeout(Duration::from_secs(20), ready_rx)
        .await
        .expect("ready within 20s")
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !saw_pool.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !stopped.load(Ordering::SeqCst),
        "the worker runs until the drain"
    );

    shutdown.drain.cancel();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("stops within 20s")
        .unwrap()
        .expect("a clean stop");
    assert!(
        stopped.load(Ordering::SeqCst),
        "the drain stopped the worker"
    );
    assert!(
        reqwest::get(format!("http://{addr}/livez")).await.is_err(),
        "the listener is closed after the stop"
    );
}

/// A spawned `intercom-sspm run` logs, at start-up, the configuration it loaded, the
/// database (host and name, never the password), its key ids, its limits and listeners.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn the_start_up_log_names_config_database_keys_limits_and_listeners(pool: PgPool) {
    let w = support::World::builder(&pool).build().await;
    let previous = support::TestKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("replica.toml");
    // A port that was free a moment ago (the console binds it once the database is up).
    let console_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let console = format!("127.0.0.1:{console_port}");
    std::fs::write(
        &config,
        format!("[console]\nlisten = \"{console}\"\nauth = \"local\"\n"),
    )
    .unwrap();
    let config_path = config.to_str().unwrap();
    let mut d = w.daemon(
        "startup-log",
        &[
            ("SSPM_CONFIG", config_path),
            ("SSPM__SECURITY__PREVIOUS_TOKEN_KEYS", previous.b64.as_str()),
            ("SSPM__SCHEDULER__REGION_CONCURRENCY__EU", "3"),
            // The format people read (the default).
            ("SSPM__LOG__FORMAT", "pretty"),
        ],
    );
    d.wait_ready(support::daemon::READY).await;
    let logs = d.logs();
    let line = |message: &str| -> String {
        logs.lines()
            .find(|l| l.contains(message))
            .unwrap_or_else(|| panic!("no {message:?} line in:\n{logs}"))
            .to_string()
    };
    let loaded = line("configuration loaded");
    let db_name = w
        .db_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    for expected in [
        config_path,
        "SSPM__SECURITY__TOKEN_KEY",
        "127.0.0.1:5432",
        db_name,
        &format!("current {}", w.key.id),
        &format!("previous {}", previous.id),
    ] {
        assert!(loaded.contains(expected), "{expected:?} not in: {loaded}");
    }
    // Names, never values: no password, no key material.
    for secret in [
        ":sspm@",
        w.key.b64.as_str(),
        previous.b64.as_str(),
        w.db_url.as_str(),
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked:\n{logs}");
    }
    let limits = line("limits and listeners");
    let port = d.port().expect("the probe port");
    for expected in [
        "max_concurrent_scans=8",
        "eu=3",
        "database_max_connections=6",
        &format!("probes http://127.0.0.1:{port}"),
        &format!("console={console}"),
    ] {
        assert!(limits.contains(expected), "{expected:?} not in: {limits}");
    }
    support::daemon::sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(20)).await;
    w.sim.shutdown().await;
}

/// People read pretty-format logs in a terminal: a scheduled scan's lines (the span
/// context included) stay under ~160 characters.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn pretty_scan_lines_fit_a_terminal(pool: PgPool) {
    use intercom_sspm::region::Region;
    let w = support::World::builder(&pool)
        .workspace(support::sim::named_workspace(
            "a-rather-long-instance-name",
            "us",
        ))
        .build()
        .await;
    let id = w
        .onboard_named("a-rather-long-instance-name", Region::Us, "1h")
        .await;
    let mut d = w.daemon("pretty-lines", &[("SSPM__LOG__FORMAT", "pretty")]);
    d.wait_ready(support::daemon::READY).await;
    assert_eq!(
        w.wait_succeeded(id, 1, Duration::from_secs(20)).await,
        1,
        "{}",
        d.logs()
    );
    support::daemon::sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(20)).await;
    let logs = d.logs();
    let scan_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("scan started") || l.contains("scan succeeded"))
        .collect();
    assert_eq!(scan_lines.len(), 2, "{logs}");
    for l in &scan_lines {
        assert!(
            l.chars().count() <= 160,
            "{} characters: {l}",
            l.chars().count()
        );
        assert!(
            l.contains("a-rather-long-instance-name"),
            "the instance is named: {l}"
        );
    }
    w.sim.shutdown().await;
}

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

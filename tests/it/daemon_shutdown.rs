//! SIGTERM: in-flight scans finish within the drain timeout while nothing new is claimed
//! (with sd_notify READY/STOPPING), and past it leases are handed back and scans abandoned.

use std::time::{Duration, Instant};

use intercom_sspm::db::instances;
use intercom_sspm::region::Region;
use sqlx::PgPool;

use crate::support::daemon::{sigterm_and_expect_clean_exit, Daemon, READY};
use crate::support::sim::named_workspace;
use crate::support::{count, db, World};

/// Receives sd_notify datagrams the way systemd does (NOTIFY_SOCKET).
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: tokio::net::UnixDatagram,
    seen: String,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
            seen: String::new(),
        }
    }

    /// Waits until a datagram containing `line` arrived.
    async fn expect(&mut self, line: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        while !self.seen.lines().any(|l| l == line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                    self.seen.push('\n');
                }
                _ => panic!("no {line} within {within:?}; got {:?}", self.seen),
            }
        }
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sigterm_lets_in_flight_scans_finish_and_claims_nothing_new(pool: PgPool) {
    let names = ["d1", "d2", "d3"];
    let mut workspaces: Vec<_> = names.iter().map(|n| named_workspace(n, "eu")).collect();
    workspaces.push(named_workspace("latecomer", "eu"));
    let w = World::builder(&pool).workspaces(workspaces).build().await;
    for n in names {
        w.onboard_named(n, Region::Eu, "1m").await;
        w.slow(n, "/admins", 1500);
    }
    let mut notify = NotifySocket::new();
    let mut env = w.daemon_env(
        &w.db_url,
        "drainer",
        &[("SSPM__SHUTDOWN__DRAIN_TIMEOUT", "10s")],
    );
    env.push(("NOTIFY_SOCKET".into(), notify.path.display().to_string()));
    let mut d = Daemon::spawn_with_env("drainer", env);
    notify.expect("READY=1", READY).await;
    assert_eq!(
        db::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            3,
            Duration::from_secs(10)
        )
        .await,
        3
    );

    let t0 = Instant::now();
    d.signal("TERM");
    notify.expect("STOPPING=1", Duration::from_secs(5)).await;
    // Work that falls due while draining stays for other replicas.
    let latecomer = w.onboard_named("latecomer", Region::Eu, "1m").await;
    instances::notify_wakeup(&pool).await.unwrap();
    let status = d.wait_exit(Duration::from_secs(12)).await;
    assert_eq!(status.code(), Some(0), "{}", d.logs());
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "drained in {:?}",
        t0.elapsed()
    );

    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'succeeded'"
        )
        .await,
        3,
        "{}",
        d.logs()
    );
    assert_eq!(w.running_scans().await, 0);
    assert_eq!(w.held_leases().await, 0);
    assert_eq!(w.succeeded(latecomer).await, 0);
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{latecomer}'")
        )
        .await,
        0,
        "claimed while draining"
    );
    // Finished scans were rescheduled normally, not handed back.
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances WHERE name <> 'latecomer' AND next_scan_at < now() + interval '50 seconds'").await, 0);
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sigterm_past_the_drain_timeout_hands_leases_back_and_abandons_scans(pool: PgPool) {
    let names = ["h1", "h2", "h3"];
    let w = World::builder(&pool)
        .workspaces(names.iter().map(|n| named_workspace(n, "au")).collect())
        .build()
        .await;
    for n in names {
        w.onboard_named(n, Region::Au, "1m").await;
        w.slow(n, "/admins", 20_000);
    }
    // Leases of 30 s: if another replica scans within a few seconds, the lease was
    // handed back, not left to lapse.
    let long_lease = [
        ("SSPM__SCHEDULER__LEASE", "30s"),
        ("SSPM__SHUTDOWN__DRAIN_TIMEOUT", "1s"),
        ("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s"),
    ];
    let mut d = w.daemon("leaver", &long_lease);
    d.wait_ready(READY).await;
    assert_eq!(
        db::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            3,
            Duration::from_secs(10)
        )
        .await,
        3
    );

    let t0 = Instant::now();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", d.logs());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        t0.elapsed()
    );

    assert_eq!(w.running_scans().await, 0);
    assert_eq!(w.held_leases().await, 0, "leases handed back");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.instances WHERE next_scan_at > now()"
        )
        .await,
        0,
        "due now for other replicas"
    );
    let abandoned: Vec<String> =
        sqlx::query_scalar("SELECT error FROM sspm.scans WHERE status = 'abandoned'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(abandoned.len(), 3);
    assert!(
        abandoned.iter().all(|e| e.contains("shut down")),
        "{abandoned:?}"
    );

    for n in names {
        w.heal(n);
    }
    let mut other = w.daemon("taker", &long_lease);
    other.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(8)).await;
    assert_eq!(db::overlapping_scans(&pool).await, 0);
    sigterm_and_expect_clean_exit(&mut other, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

//! The database going away: an outage mid-scan (connections cut, backends terminated) is
//! survived without lost or duplicate rows, and a daemon started without Postgres waits.

use std::time::{Duration, Instant};

use chrono::Utc;
use intercom_sspm::region::Region;
use sqlx::PgPool;

use crate::support::daemon::{self as ds, sigterm_and_expect_clean_exit, Daemon, READY};
use crate::support::sim::named_workspace;
use crate::support::{count, db, World};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn database_outage_is_survived_without_lost_or_duplicate_rows(pool: PgPool) {
    let names: Vec<String> = (0..12).map(|i| format!("o{i}")).collect();
    let w = World::builder(&pool)
        .workspaces(names.iter().map(|n| named_workspace(n, "us")).collect())
        .build()
        .await;
    for n in &names {
        w.onboard_named(n, Region::Us, "1m").await;
        w.slow(n, "/admins", 300);
    }
    let proxy = ds::PgProxy::start(ds::pg_addr(&w.db_url)).await;
    let env = w.daemon_env(
        &proxy.url(&w.db_url),
        "survivor",
        &[("SSPM__SCHEDULER__MAX_CONCURRENT_SCANS", "4")],
    );
    let mut d = Daemon::spawn_with_env("survivor", env);
    d.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(30)).await;

    // Outage 1: the database disappears (connections cut, new ones refused) while scans
    // are in flight.
    w.force_all_due().await;
    db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
        1,
        Duration::from_secs(5),
    )
    .await;
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = d.get("/readyz").await;
        if status == 503 {
            assert!(body.contains("database unreachable"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} while the database was gone:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.get("/livez").await.0, 200, "alive through the outage");
    // Longer than the lease: the leases of the interrupted scans lapse meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        d.try_exit().is_none(),
        "daemon died during the outage:\n{}",
        d.logs()
    );
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.get("/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after the outage:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Outage 2: the daemon's backends are terminated again and again (a Postgres restart
    // as clients see it).
    w.force_all_due().await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'intercom-sspm' AND datname = current_database()",
        )
        .execute(&pool)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let resumed = Utc::now();
    w.force_all_due().await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let missing = count(
            &pool,
            &format!(
                "SELECT count(*) FROM sspm.instances i WHERE NOT EXISTS (SELECT 1 FROM sspm.scans s
                   WHERE s.instance_id = i.id AND s.status = 'succeeded' AND s.started_at >= '{}')",
                resumed.to_rfc3339()
            ),
        )
        .await;
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} instances not scanned after the outages:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.try_exit().is_none(), "daemon died:\n{}", d.logs());
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(15)).await;

    assert_eq!(db::overlapping_scans(&pool).await, 0);
    assert_eq!(w.running_scans().await, 0, "no scan left running");
    assert_eq!(w.held_leases().await, 0);
    // A scan either committed whole or not at all: every succeeded scan has its check
    // results, and no finding was opened twice.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans s WHERE s.status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM sspm.check_results c WHERE c.scan_id = s.id)").await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM (SELECT finding_id FROM sspm.finding_events WHERE from_status IS NULL GROUP BY finding_id HAVING count(*) > 1) x").await,
        0
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_waits_for_the_database_at_start_up(pool: PgPool) {
    let w = World::builder(&pool)
        .workspaces(vec![named_workspace("early", "us")])
        .build()
        .await;
    let early = w.onboard_named("early", Region::Us, "1m").await;
    let proxy = ds::PgProxy::start(ds::pg_addr(&w.db_url)).await;
    proxy.cut();
    let env = w.daemon_env(&proxy.url(&w.db_url), "patient", &[]);
    let mut d = Daemon::spawn_with_env("patient", env);
    // Alive (so a startup probe passes) but not ready while Postgres is away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get("/livez").await.0 != 200 {
        assert!(Instant::now() < deadline, "no /livez:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = d.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("starting"), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        d.try_exit().is_none(),
        "gave up on the database:\n{}",
        d.logs()
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.scans").await, 0);

    proxy.restore();
    d.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(w.wait_succeeded(early, 1, Duration::from_secs(10)).await, 1);
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;

    // A signal while still waiting for the database ends the daemon cleanly too.
    proxy.cut();
    let env = w.daemon_env(&proxy.url(&w.db_url), "quitter", &[]);
    let mut q = Daemon::spawn_with_env("quitter", env);
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.get("/livez").await.0 != 200 {
        assert!(Instant::now() < deadline, "no /livez:\n{}", q.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm_and_expect_clean_exit(&mut q, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

/// The pool checks a connection before handing it out: a backend that went away while
/// it sat idle (Postgres restarted, a firewall dropped the connection) is replaced before
/// a query uses it, instead of failing that query. (Skipping the check for connections
/// used within the last 5 s saved a round trip per acquire, but handed out dead ones after
/// a restart: `database_outage_is_survived_without_lost_or_duplicate_rows` then failed.)
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_pooled_connection_idle_for_a_while_is_checked_before_it_is_used(pool: PgPool) {
    let url = db::database_url(&pool);
    let settings = crate::support::settings(
        None,
        &[
            ("DATABASE_URL", url.as_str()),
            ("SSPM__DATABASE__MAX_CONNECTIONS", "1"),
        ],
    );
    let daemon_pool = intercom_sspm::db::connect(&settings).await.unwrap();
    let backend = || async {
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&daemon_pool)
            .await
    };
    let first = backend().await.unwrap();
    assert_eq!(backend().await.unwrap(), first, "one pooled connection");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let replaced = backend()
        .await
        .expect("the dead idle connection is replaced, not handed out");
    assert_ne!(replaced, first);
}

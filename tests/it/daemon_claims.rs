//! Claims and leases across `intercom-sspm run` processes: never two scans of one
//! instance, concurrency limits, a lease taken over cancels the scan, three replicas share
//! 300 instances, and a SIGKILLed replica's leases lapse to another.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use intercom_sim::generate;
use intercom_sspm::db::instances;
use intercom_sspm::region::Region;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::daemon::{sigterm_and_expect_clean_exit, Daemon, READY};
use crate::support::prometheus::parse_prometheus;
use crate::support::sim::named_workspace;
use crate::support::{count, db, sim, Onboard, World};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_never_starts_a_second_scan_of_an_instance_it_is_scanning(pool: PgPool) {
    let w = World::builder(&pool)
        .workspaces(vec![named_workspace("busy", "us")])
        .build()
        .await;
    let busy = w.onboard_named("busy", Region::Us, "1m").await;
    w.slow("busy", "/admins", 2500);
    let mut d = w.daemon("one", &[("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s")]);
    d.wait_ready(READY).await;
    assert_eq!(
        db::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    // An operator queues a scan (and another edits the schedule) while one runs: the
    // instance is "due" but its lease is live, so nobody may claim it.
    instances::queue_now(&pool, busy).await.unwrap();
    instances::set_schedule(&pool, busy, Some("1m"), Utc::now())
        .await
        .unwrap();
    instances::notify_wakeup(&pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans").await,
        1,
        "a second scan started:\n{}",
        d.logs()
    );
    // The request made during the scan is honoured after it, one scan after the other.
    assert!(
        w.wait_succeeded(busy, 2, Duration::from_secs(15)).await >= 2,
        "{}",
        d.logs()
    );
    assert_eq!(db::overlapping_scans(&pool).await, 0);
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_honours_limits_and_claims_as_soon_as_a_permit_frees_up(pool: PgPool) {
    let us = ["p1", "p2", "p3", "p4", "p5"];
    let eu = ["q1", "q2"];
    let mut workspaces: Vec<_> = us.iter().map(|n| named_workspace(n, "us")).collect();
    workspaces.extend(eu.iter().map(|n| named_workspace(n, "eu")));
    let w = World::builder(&pool).workspaces(workspaces).build().await;
    for n in us {
        w.onboard_named(n, Region::Us, "1m").await;
        w.slow(n, "/admins", 300);
    }
    for n in eu {
        w.onboard_named(n, Region::Eu, "1m").await;
        w.slow(n, "/admins", 300);
    }
    // One US scan at a time (region limit), a poll every minute: five US scans within
    // seconds means each finished scan triggered the next claim instead of waiting for
    // the poll.
    let mut d = w.daemon(
        "serial",
        &[
            ("SSPM__SCHEDULER__POLL_INTERVAL", "60s"),
            ("SSPM__SCHEDULER__MAX_CONCURRENT_SCANS", "3"),
            ("SSPM__SCHEDULER__REGION_CONCURRENCY__US", "1"),
        ],
    );
    d.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(15)).await;
    assert_eq!(db::overlapping_scans(&pool).await, 0);
    let concurrent = |filter: &'static str| {
        let pool = pool.clone();
        async move {
            count(
                &pool,
                &format!(
                    "SELECT count(*) FROM sspm.scans a JOIN sspm.instances ia ON ia.id = a.instance_id,
                            sspm.scans b JOIN sspm.instances ib ON ib.id = b.instance_id
                     WHERE a.id < b.id AND a.started_at < b.finished_at AND b.started_at < a.finished_at
                       AND {filter}"
                ),
            )
            .await
        }
    };
    assert_eq!(
        concurrent("ia.region = 'us' AND ib.region = 'us'").await,
        0,
        "region_concurrency.us = 1 was exceeded"
    );
    // The other region was not held back by the US limit: its scans ran beside US ones.
    assert!(
        concurrent("ia.region <> ib.region").await > 0,
        "EU scans waited for US ones"
    );
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_cancels_a_scan_whose_lease_was_taken_over(pool: PgPool) {
    let w = World::builder(&pool)
        .workspaces(vec![named_workspace("stolen", "us")])
        .build()
        .await;
    let stolen = w.onboard_named("stolen", Region::Us, "1m").await;
    w.slow("stolen", "/admins", 6000);
    let mut d = w.daemon("loser", &[("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s")]);
    d.wait_ready(READY).await;
    assert_eq!(
        db::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    // What a replica that believed the lease expired does: a new token, the old scan
    // marked abandoned.
    let t0 = Instant::now();
    sqlx::raw_sql(
        "UPDATE sspm.instances SET lease_token = gen_random_uuid(), lease_owner = 'thief',
                lease_expires_at = now() + interval '1 hour', next_scan_at = now() + interval '1 hour';
         UPDATE sspm.scans SET status = 'abandoned', finished_at = now(), error = 'taken over' WHERE status = 'running';",
    )
    .execute(&pool)
    .await
    .unwrap();
    // The heartbeat (every 1 s) notices and cancels long before /admins answers (6 s).
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let m = parse_prometheus(&d.get("/metrics").await.1).unwrap();
        if m.sum("sspm_scans_total", &[("outcome", "lease_lost")]) == 1.0 {
            assert_eq!(m.sum("sspm_leases_lost_total", &[]), 1.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scan not cancelled:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The loser wrote nothing and left the new holder's lease alone.
    let owner: Option<String> =
        sqlx::query_scalar("SELECT lease_owner FROM sspm.instances WHERE id = $1")
            .bind(stolen)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(owner.as_deref(), Some("thief"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.check_results").await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status <> 'abandoned'"
        )
        .await,
        0
    );
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn three_daemons_scan_300_instances_without_double_scans_or_misses(pool: PgPool) {
    let params = generate::GenerateParams {
        workspaces: 300,
        admins_per_workspace: 3,
        events_per_workspace: 3,
        ..Default::default()
    };
    let scenario = generate::generate(&params);
    let w = World::builder(&pool)
        .scenario(scenario.clone())
        .build()
        .await;
    for ws in &scenario.workspaces {
        let spec = Onboard::new(&ws.id_code)
            .region(sim::product_region(ws.region))
            .schedule("1m");
        w.onboard(&spec, &ws.tokens[0].token).await;
    }

    let started = Instant::now();
    let mut daemons: Vec<Daemon> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| w.daemon(n, &[]))
        .collect();
    for d in &mut daemons {
        d.wait_ready(READY).await;
    }
    w.wait_all_succeeded(1, Duration::from_secs(90)).await;
    // A second full round while all three are claiming: every instance due at once again.
    w.force_all_due().await;
    w.wait_all_succeeded(2, Duration::from_secs(90)).await;
    eprintln!(
        "300 instances x 2 rounds on 3 daemons: {:?}",
        started.elapsed()
    );
    for d in &mut daemons {
        sigterm_and_expect_clean_exit(d, Duration::from_secs(20)).await;
    }

    assert_eq!(
        db::overlapping_scans(&pool).await,
        0,
        "an instance was scanned twice at once"
    );
    assert_eq!(w.short_of(2).await, 0, "an instance was missed");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status <> 'succeeded'"
        )
        .await,
        0,
        "every scan succeeded"
    );
    assert_eq!(w.held_leases().await, 0);
    let per_replica: Vec<(String, i64)> = sqlx::query_as(
        "SELECT replica, count(*) FROM sspm.scans GROUP BY replica ORDER BY replica",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    eprintln!("scans per replica: {per_replica:?}");
    assert_eq!(
        per_replica.len(),
        3,
        "every replica claimed work: {per_replica:?}"
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sigkilled_daemons_leases_lapse_and_another_daemon_rescans(pool: PgPool) {
    let names = ["k1", "k2", "k3", "k4"];
    let w = World::builder(&pool)
        .workspaces(names.iter().map(|n| named_workspace(n, "us")).collect())
        .build()
        .await;
    let mut ids = Vec::new();
    for n in names {
        ids.push(w.onboard_named(n, Region::Us, "1m").await);
        w.slow(n, "/admins", 30_000);
    }
    // A long request timeout so the slow /admins hangs instead of failing.
    let slow_client = [("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s")];
    let mut a = w.daemon("victim", &slow_client);
    a.wait_ready(READY).await;
    let running = db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'running' AND replica = 'victim'",
        4,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(running, 4, "{}", a.logs());
    // Let at least one heartbeat extend the leases before the crash.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    let leases: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, lease_expires_at FROM sspm.instances ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(leases.len(), 4);

    for n in names {
        w.heal(n);
    }
    let mut b = w.daemon("rescuer", &[]);
    b.wait_ready(READY).await;
    for id in &ids {
        let n = db::wait_count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'succeeded' AND replica = 'rescuer'"),
            1,
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(n, 1, "{id} not rescanned:\n{}", b.logs());
    }

    for (id, lease_expires_at) in &leases {
        let (status, error, finished): (String, Option<String>, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT status, error, finished_at FROM sspm.scans WHERE instance_id = $1 AND replica = 'victim'")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(status, "abandoned", "{id}");
        assert!(error.unwrap_or_default().contains("lease expired"), "{id}");
        let rescue_started: DateTime<Utc> = sqlx::query_scalar(
            "SELECT started_at FROM sspm.scans WHERE instance_id = $1 AND replica = 'rescuer'",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            rescue_started >= *lease_expires_at,
            "{id}: rescued at {rescue_started} while the lease ran until {lease_expires_at}"
        );
        assert_eq!(
            finished,
            Some(rescue_started),
            "{id}: abandoned by the claim that took over"
        );
    }
    assert_eq!(db::overlapping_scans(&pool).await, 0);
    let metrics = parse_prometheus(&b.get("/metrics").await.1).unwrap();
    assert_eq!(metrics.sum("sspm_leases_reclaimed_total", &[]), 4.0);

    sigterm_and_expect_clean_exit(&mut b, Duration::from_secs(15)).await;
    w.sim.shutdown().await;
}

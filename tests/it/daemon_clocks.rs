//! Time as the daemon keeps it (issue 15 items 6 and 7): every persisted time and every next
//! due time comes from Postgres's clock, and is counted from when a scan ENDED. Replicas
//! with skewed clocks run as real processes under libfaketime (support::daemon::
//! skewed_clock_env), next to a replica with the true time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::daemon::{self as ds, sigterm_and_expect_clean_exit, Daemon, READY};
use crate::support::sim::named_workspace;
use crate::support::{db, World};

/// A scan row: started_at, finished_at, status, error_kind.
type ScanTimes = (DateTime<Utc>, Option<DateTime<Utc>>, String, Option<String>);

/// A scan that runs longer than its backoff (a hanging host uses up `scan_timeout`) is
/// retried a backoff after it ENDED. The backoff used to count from the start, so the
/// next due time was already past when the scan finished and the instance was rescanned
/// at once.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn backoff_counts_from_the_end_of_a_long_scan(pool: PgPool) {
    let w = World::builder(&pool)
        .workspace(named_workspace("hangs", "us"))
        .build()
        .await;
    let id = w
        .onboard_named("hangs", intercom_sspm::region::Region::Us, "1m")
        .await;
    // /me answers, /admins hangs past the scan's 2.5 s budget: each scan fails after ~2.5 s,
    // and the backoff (capped at 1 s by max_backoff) is shorter than the scan.
    w.slow("hangs", "/admins", 10_000);
    let mut d = w.daemon(
        "backoff",
        &[
            ("SSPM__INTERCOM__SCAN_TIMEOUT", "2500ms"),
            ("SSPM__SCHEDULER__MAX_BACKOFF", "1s"),
        ],
    );
    d.wait_ready(READY).await;
    db::wait_count(
        &pool,
        &format!(
            "SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'failed'"
        ),
        3,
        Duration::from_secs(30),
    )
    .await;
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(20)).await;

    let scans: Vec<ScanTimes> = sqlx::query_as(
        "SELECT started_at, finished_at, status, error_kind FROM sspm.scans
             WHERE instance_id = $1 ORDER BY started_at",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let failed: Vec<_> = scans.iter().filter(|s| s.2 == "failed").collect();
    assert!(failed.len() >= 3, "{scans:?}");
    for s in &failed {
        assert_eq!(s.3.as_deref(), Some("timeout"), "{s:?}");
        let took = s.1.unwrap() - s.0;
        assert!(took >= chrono::Duration::seconds(2), "the scan hung: {s:?}");
    }
    // Each retry starts at least the backoff (1 s) after the previous scan finished.
    for pair in scans.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let gap = next.0 - prev.1.expect("the earlier scan finished");
        assert!(
            gap >= chrono::Duration::seconds(1),
            "retried {} ms after the previous scan ended (backoff 1 s): {scans:?}",
            gap.num_milliseconds()
        );
    }
    w.sim.shutdown().await;
}

/// Per instance: (last_scan_at, next_scan_at) as stored.
async fn schedule_state(pool: &PgPool) -> HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)> {
    let rows: Vec<(Uuid, Option<DateTime<Utc>>, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, last_scan_at, next_scan_at FROM sspm.instances")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, last, next)| (id, (last.expect("scanned"), next)))
        .collect()
}

/// Every instance's next regular slot is its schedule (1 minute, plus at most 5 % jitter)
/// after its last scan, both by the database's clock.
fn assert_next_slot_follows_the_database(
    phase: &str,
    state: &HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)>,
) {
    for (id, (last, next)) in state {
        let ms = (*next - *last).num_milliseconds();
        assert!(
            (60_000..=63_000).contains(&ms),
            "{phase}: instance {id} is due {ms} ms after its last scan, not 1 minute (+ jitter)"
        );
    }
}

/// Starts daemon `name` with its clock shifted by `offset` (None: the true time), waits
/// until it is ready and checks the shift took effect.
async fn replica(
    w: &World,
    name: &str,
    offset: Option<(&str, i64)>,
    extra: &[(&str, &str)],
) -> Daemon {
    let mut env = w.daemon_env(&w.db_url, name, extra);
    if let Some((faketime, _)) = offset {
        env.extend(ds::skewed_clock_env(faketime));
    }
    let mut d = Daemon::spawn_with_env(name, env);
    d.wait_ready(READY).await;
    let own = d.first_log_time().expect("a time-stamped first log line");
    let skew = (own - Utc::now()).num_seconds();
    let expected = offset.map_or(0, |(_, s)| s);
    assert!(
        (skew - expected).abs() <= 5,
        "daemon {name} runs {skew} s off the true time, expected {expected} s:\n{}",
        d.logs()
    );
    d
}

/// A replica 30 s behind and one 30 s ahead, each taking over from a replica with the true
/// time. Before: the one behind wrote finished_at < started_at, moved last_scan_at back
/// and rescheduled its instances 30 s after their scan (scanning twice as often); the one
/// ahead rescheduled 90 s out and handed a lease back "due now" 30 s in the future.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn skewed_replicas_keep_to_the_database_clock(pool: PgPool) {
    let names: Vec<String> = (0..4).map(|i| format!("clock{i}")).collect();
    let w = World::builder(&pool)
        .workspaces(names.iter().map(|n| named_workspace(n, "us")).collect())
        .build()
        .await;
    let mut ids = Vec::new();
    for n in &names {
        ids.push(
            w.onboard_named(n, intercom_sspm::region::Region::Us, "1m")
                .await,
        );
    }

    // 1. The true replica scans everything once.
    let mut d = replica(&w, "true-time", None, &[]).await;
    w.wait_all_succeeded(1, Duration::from_secs(30)).await;
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(20)).await;
    let after_true = schedule_state(&pool).await;
    assert_next_slot_follows_the_database("true replica", &after_true);

    // 2. A replica 30 s behind scans them again, seconds later.
    w.force_all_due().await;
    let mut d = replica(&w, "behind", Some(("-30s", -30)), &[]).await;
    w.wait_all_succeeded(2, Duration::from_secs(30)).await;
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(20)).await;
    let after_behind = schedule_state(&pool).await;
    assert_next_slot_follows_the_database("replica 30 s behind", &after_behind);
    for (id, (last, _)) in &after_behind {
        assert!(
            *last > after_true[id].0,
            "last_scan_at of {id} moved backwards: {} then {last}",
            after_true[id].0
        );
    }
    // Not due again before its slot: the replica behind does not scan more often.
    let due: i64 = db::count(
        &pool,
        "SELECT count(*) FROM sspm.instances WHERE next_scan_at <= now() + interval '50 seconds'",
    )
    .await;
    assert_eq!(
        due, 0,
        "instances due again within 50 s of a scan by the replica behind"
    );

    // 3. A replica 30 s ahead scans them, then is stopped in the middle of a slow scan: the
    //    lease it hands back is due now by the database's clock, not its own.
    w.force_all_due().await;
    let mut d = replica(
        &w,
        "ahead",
        Some(("+30s", 30)),
        &[("SSPM__SHUTDOWN__DRAIN_TIMEOUT", "500ms")],
    )
    .await;
    w.wait_all_succeeded(3, Duration::from_secs(30)).await;
    let after_ahead = schedule_state(&pool).await;
    assert_next_slot_follows_the_database("replica 30 s ahead", &after_ahead);
    w.slow(&names[0], "/admins", 20_000);
    w.force_all_due().await;
    let running = format!(
        "SELECT count(*) FROM sspm.scans WHERE status = 'running' AND instance_id = '{}'",
        ids[0]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while db::count(&pool, &running).await == 0 {
        assert!(Instant::now() < deadline, "no scan started:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(20)).await;
    let (abandoned, due_in_ms): (i64, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sspm.scans WHERE status = 'abandoned'),
                (SELECT EXTRACT(EPOCH FROM max(next_scan_at) - now())::float8 * 1000
                   FROM sspm.instances i JOIN sspm.scans s ON s.instance_id = i.id
                  WHERE s.status = 'abandoned')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        abandoned >= 1,
        "the slow scan was cancelled and its lease released"
    );
    assert!(
        due_in_ms <= 0.0,
        "the released instance is due {due_in_ms} ms in the future (the replica's own clock)"
    );

    // Across every scan of every replica: nothing finished before it started.
    let backwards = db::count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE finished_at < started_at",
    )
    .await;
    assert_eq!(backwards, 0, "scans that finished before they started");
    let replicas: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT replica FROM sspm.scans ORDER BY replica")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(replicas, ["ahead", "behind", "true-time"]);
    w.sim.shutdown().await;
}

//! `intercom-sspm run` scheduling as a real process against real Postgres and the
//! in-process simulator: due instances are claimed and rescheduled, NOTIFY sspm_wakeup wakes
//! the daemon, operator changes apply without a restart, and a 429 snoozes instead of
//! counting a failure. Daemons poll every 200 ms with 3 s leases (support::daemon); tests
//! force instances due with SQL plus NOTIFY sspm_wakeup.

use std::time::{Duration, Instant};

use chrono::Utc;
use intercom_sim::FaultSpec;
use intercom_sspm::db::instances;
use intercom_sspm::region::Region;
use intercom_sspm::token::TokenSource;
use secrecy::SecretString;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::daemon::{sigterm_and_expect_clean_exit, READY};
use crate::support::prometheus::parse_prometheus;
use crate::support::sim::named_workspace;
use crate::support::{count, db, sim, World};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_scans_due_instances_reschedules_and_wakes_on_notify(pool: PgPool) {
    let w = World::builder(&pool)
        .workspaces(vec![
            named_workspace("alpha", "us"),
            named_workspace("beta", "eu"),
            named_workspace("gamma", "au"),
            named_workspace("delta", "us"),
        ])
        .build()
        .await;
    let alpha = w.onboard_named("alpha", Region::Us, "1m").await;
    w.onboard_named("beta", Region::Eu, "1m").await;
    w.onboard_named("gamma", Region::Au, "1m").await;

    // Polling once a minute: whatever is scanned within seconds later was either due at
    // start-up or woken by NOTIFY sspm_wakeup.
    let mut d = w.daemon("solo", &[("SSPM__SCHEDULER__POLL_INTERVAL", "60s")]);
    d.wait_ready(READY).await;
    let done = db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'succeeded'",
        3,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done, 3, "{}", d.logs());

    // Rescheduled per schedule (1m) plus jitter (up to 5% = 3 s), counted from the claim.
    type Row = (
        String,
        String,
        Option<String>,
        f64,
        i32,
        String,
        Option<Uuid>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.trigger, s.replica, i.status, EXTRACT(EPOCH FROM i.next_scan_at - s.started_at)::float8,
                i.consecutive_failures, i.name, i.lease_token
         FROM sspm.scans s JOIN sspm.instances i ON i.id = s.instance_id ORDER BY i.name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for (trigger, replica, status, next_in, failures, name, lease) in &rows {
        assert_eq!(trigger, "schedule", "{name}");
        assert_eq!(replica, "solo", "{name}");
        assert_eq!(status.as_deref(), Some("ok"), "{name}");
        assert!(
            // 60 s + up to 3 s of jitter, measured from the claim; the slack covers the
            // moment between the claim statement and the scan task computing it.
            (59.5..=65.0).contains(next_in),
            "{name}: next scan {next_in}s after the claim"
        );
        assert_eq!(*failures, 0, "{name}");
        assert!(lease.is_none(), "{name}: lease released after the scan");
    }

    // A newly onboarded instance: due at once, and NOTIFY wakes the daemon long before
    // its next 60 s poll.
    let t0 = Instant::now();
    let delta = w.onboard_named("delta", Region::Us, "1m").await;
    instances::notify_wakeup(&pool).await.unwrap();
    assert_eq!(
        w.wait_succeeded(delta, 1, Duration::from_secs(10)).await,
        1,
        "{}",
        d.logs()
    );
    assert!(t0.elapsed() < Duration::from_secs(10));

    // Forced due by SQL (what `scan --queue` does): scanned again without a restart.
    instances::queue_now(&pool, alpha).await.unwrap();
    assert_eq!(
        w.wait_succeeded(alpha, 2, Duration::from_secs(10)).await,
        2,
        "{}",
        d.logs()
    );
    assert_eq!(db::overlapping_scans(&pool).await, 0);

    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(15)).await;
    assert_eq!(w.running_scans().await, 0);
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_applies_instance_changes_without_restart(pool: PgPool) {
    let mut retoken = named_workspace("retoken", "us");
    retoken["tokens"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "token": "tok_retoken_new_9a8b7c", "scopes": ["read_admins"] }));
    let w = World::builder(&pool)
        .workspaces(vec![
            named_workspace("keep", "us"),
            named_workspace("disableme", "eu"),
            named_workspace("removeme", "au"),
            named_workspace("reschedule", "us"),
            retoken,
        ])
        .build()
        .await;
    let keep = w.onboard_named("keep", Region::Us, "1m").await;
    let disable = w.onboard_named("disableme", Region::Eu, "1m").await;
    let remove = w.onboard_named("removeme", Region::Au, "1m").await;
    let reschedule = w.onboard_named("reschedule", Region::Us, "1m").await;
    let retoken = w.onboard_named("retoken", Region::Us, "1m").await;

    let mut d = w.daemon("changes", &[]);
    d.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(20)).await;

    instances::set_enabled(&pool, disable, false).await.unwrap();
    assert!(instances::remove(&pool, remove).await.unwrap());
    instances::set_schedule(&pool, reschedule, Some("2h"), Utc::now())
        .await
        .unwrap();
    // The old token dies at Intercom; the operator stores a new one.
    w.sim
        .scenario_handle()
        .revoke_token(&sim::token_of("retoken"))
        .unwrap();
    let sealed = w.keyring.seal(
        &SecretString::from("tok_retoken_new_9a8b7c".to_string()),
        retoken.as_bytes(),
    );
    instances::set_token(&pool, retoken, &TokenSource::Sealed(sealed))
        .await
        .unwrap();
    w.force_all_due().await;

    for id in [keep, reschedule, retoken] {
        assert_eq!(
            w.wait_succeeded(id, 2, Duration::from_secs(15)).await,
            2,
            "{id}:\n{}",
            d.logs()
        );
    }
    // The disabled instance was due in the same rounds: give the daemon a few more polls.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{disable}'")
        )
        .await,
        1,
        "disabled instance scanned"
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{remove}'")
        )
        .await,
        0
    );

    let next_in: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM i.next_scan_at - s.started_at)::float8 FROM sspm.instances i
         JOIN sspm.scans s ON s.id = i.last_scan_id WHERE i.id = $1",
    )
    .bind(reschedule)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        (7199.5..=7200.0 * 1.05 + 1.0).contains(&next_in),
        "new schedule 2h: next scan in {next_in}s"
    );

    let (status, failures): (String, i32) =
        sqlx::query_as("SELECT status, consecutive_failures FROM sspm.instances WHERE id = $1")
            .bind(retoken)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), failures),
        ("ok", 0),
        "the new token was used"
    );
    assert!(
        w.sim
            .scenario_handle()
            .token_calls("tok_retoken_new_9a8b7c")
            .unwrap_or(0)
            > 0
    );

    assert_eq!(
        d.get("/readyz").await.0,
        200,
        "still ready after the changes"
    );
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(15)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn rate_limited_scan_snoozes_until_reset_without_counting_a_failure(pool: PgPool) {
    let w = World::builder(&pool)
        .workspaces(vec![
            named_workspace("limited", "us"),
            named_workspace("broken", "us"),
        ])
        .build()
        .await;
    let limited = w.onboard_named("limited", Region::Us, "6h").await;
    let broken = w.onboard_named("broken", Region::Us, "6h").await;
    sqlx::query("UPDATE sspm.instances SET consecutive_failures = 2 WHERE id = $1")
        .bind(limited)
        .execute(&pool)
        .await
        .unwrap();
    let handle = w.sim.scenario_handle();
    let reset: FaultSpec =
        serde_json::from_value(json!({ "rate_limited": { "reset_after_secs": 120 } })).unwrap();
    handle.set_workspace_faults("limited", reset).unwrap();
    let down: FaultSpec =
        serde_json::from_value(json!({ "server_error": { "status": 503 } })).unwrap();
    handle.set_workspace_faults("broken", down).unwrap();

    let mut d = w.daemon("snoozer", &[("SSPM__INTERCOM__MAX_RATE_LIMIT_WAIT", "1s")]);
    d.wait_ready(READY).await;
    let done = db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'failed'",
        2,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done, 2, "{}", d.logs());

    let row = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i32, f64, Option<String>, String)>(
                "SELECT i.consecutive_failures, EXTRACT(EPOCH FROM i.next_scan_at - s.finished_at)::float8, s.error_kind, i.status
                 FROM sspm.instances i JOIN sspm.scans s ON s.id = i.last_scan_id WHERE i.id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (failures, next_in, kind, status) = row(limited).await;
    assert_eq!(kind.as_deref(), Some("rate_limited"));
    assert_eq!(
        failures, 2,
        "a 429 is not a failure: the count is unchanged"
    );
    assert!(
        (115.0..=125.0).contains(&next_in),
        "snoozed until the reset (120 s), got {next_in}s"
    );
    assert_eq!(
        status, "pending",
        "a 429 says nothing about the instance's health"
    );
    // Contrast: a real failure counts and backs off from the first step (1 min).
    let (failures, next_in, kind, _) = row(broken).await;
    assert_eq!(kind.as_deref(), Some("unreachable"));
    assert_eq!(failures, 1);
    assert!(
        (55.0..=65.0).contains(&next_in),
        "first backoff step, got {next_in}s"
    );

    let m = parse_prometheus(&d.get("/metrics").await.1).unwrap();
    assert_eq!(
        m.sum(
            "sspm_scans_total",
            &[("outcome", "rate_limited"), ("region", "us")]
        ),
        1.0
    );
    assert_eq!(m.sum("sspm_scans_total", &[("outcome", "failed")]), 1.0);
    assert!(m.sum("sspm_intercom_rate_limited_total", &[("region", "us")]) >= 1.0);
    assert!(m.sum("sspm_intercom_requests_total", &[("status", "429")]) >= 1.0);
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

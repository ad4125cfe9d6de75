//! Housekeeping against real Postgres: the once-per-slot claim across replicas, the
//! retention prune (what it deletes and what it must keep), and the jobs actually firing
//! through tokio-cron-scheduler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use intercom_sspm::scheduler::housekeeping::{self, Plan};
use sqlx::PgPool;

use crate::support::{self, count};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_housekeeping_slot_is_claimed_once_across_replicas(pool: PgPool) {
    let slot = Utc::now()
        .duration_trunc(chrono::Duration::days(1))
        .unwrap();
    // Eight replicas firing at the same instant: exactly one wins.
    let mut tasks = Vec::new();
    for r in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            housekeeping::claim_slot(&pool, "retention", slot, &format!("replica-{r}"))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert!(
        !housekeeping::claim_slot(&pool, "retention", slot, "replica-0")
            .await
            .unwrap(),
        "same slot again"
    );
    // The next slot, and another job in the same slot, are separate claims.
    let next = slot + chrono::Duration::days(1);
    assert!(
        housekeeping::claim_slot(&pool, "retention", next, "replica-3")
            .await
            .unwrap()
    );
    assert!(
        housekeeping::claim_slot(&pool, "another_job", slot, "replica-3")
            .await
            .unwrap()
    );

    // The job runner: the first replica runs and records the result, the second skips.
    let day = chrono::Duration::days(1);
    assert!(housekeeping::run_expire(&pool, "a", day).await);
    assert!(!housekeeping::run_expire(&pool, "b", day).await);
    let finished = count(
        &pool,
        "SELECT count(*) FROM sspm.housekeeping_runs WHERE job = 'expire_exceptions' AND replica = 'a' AND finished_at IS NOT NULL AND detail ? 'reopened'",
    )
    .await;
    assert_eq!(finished, 1);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.housekeeping_runs WHERE replica = 'b'"
        )
        .await,
        0
    );
}

const SEED: &str = r#"
INSERT INTO sspm.instances (id, name, region, token_ref, last_scan_id) VALUES
  ('11111111-1111-1111-1111-111111111111', 'failing', 'us', 'env:TOKEN_A', NULL),
  ('22222222-2222-2222-2222-222222222222', 'healthy', 'eu', 'env:TOKEN_B', NULL);

INSERT INTO sspm.scans (id, instance_id, status, trigger, started_at, finished_at, score) VALUES
  -- failing: last success 100 days ago, failures since; everything is past retention.
  ('a0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'succeeded', 'schedule', now() - interval '120 days', now() - interval '120 days', 40),
  ('a0000000-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111', 'succeeded', 'schedule', now() - interval '100 days', now() - interval '100 days', 60),
  ('a0000000-0000-0000-0000-000000000003', '11111111-1111-1111-1111-111111111111', 'failed',    'schedule', now() - interval '97 days',  now() - interval '97 days', NULL),
  ('a0000000-0000-0000-0000-000000000004', '11111111-1111-1111-1111-111111111111', 'failed',    'schedule', now() - interval '95 days',  now() - interval '95 days', NULL),
  -- healthy: an old scan and a recent one.
  ('b0000000-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 'abandoned', 'schedule', now() - interval '200 days', now() - interval '200 days', NULL),
  ('b0000000-0000-0000-0000-000000000002', '22222222-2222-2222-2222-222222222222', 'succeeded', 'schedule', now() - interval '91 days',  now() - interval '91 days', 70),
  ('b0000000-0000-0000-0000-000000000003', '22222222-2222-2222-2222-222222222222', 'succeeded', 'schedule', now() - interval '1 day',    now() - interval '1 day', 90);

UPDATE sspm.instances SET last_scan_id = 'a0000000-0000-0000-0000-000000000004' WHERE name = 'failing';
UPDATE sspm.instances SET last_scan_id = 'b0000000-0000-0000-0000-000000000003' WHERE name = 'healthy';

INSERT INTO sspm.check_results (scan_id, instance_id, check_id, status, severity) VALUES
  ('a0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'admin_without_role', 'fail', 'low'),
  ('a0000000-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111', 'admin_without_role', 'fail', 'low'),
  ('b0000000-0000-0000-0000-000000000002', '22222222-2222-2222-2222-222222222222', 'admin_without_role', 'pass', 'low');

INSERT INTO sspm.finding_rows (id, instance_id, check_id, resource, status, severity, title, remediation,
                           first_seen_at, last_seen_at, resolved_at, first_scan_id, last_scan_id) VALUES
  -- Open since long ago: its scans go, the finding stays.
  ('f0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'admin_without_role', 'admin:1', 'open', 'low',
   'Teammate has no role', 'Assign a role', now() - interval '120 days', now() - interval '100 days', NULL,
   'a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002'),
  ('f0000000-0000-0000-0000-000000000002', '22222222-2222-2222-2222-222222222222', 'admin_without_role', 'admin:2', 'resolved', 'low',
   'Teammate has no role', 'Assign a role', now() - interval '200 days', now() - interval '200 days', now() - interval '91 days',
   'b0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000002');

INSERT INTO sspm.finding_events (finding_id, instance_id, scan_id, from_status, to_status, at) VALUES
  ('f0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'a0000000-0000-0000-0000-000000000001', NULL, 'open', now() - interval '120 days'),
  ('f0000000-0000-0000-0000-000000000002', '22222222-2222-2222-2222-222222222222', 'b0000000-0000-0000-0000-000000000001', NULL, 'open', now() - interval '200 days'),
  ('f0000000-0000-0000-0000-000000000002', '22222222-2222-2222-2222-222222222222', 'b0000000-0000-0000-0000-000000000003', 'open', 'resolved', now() - interval '1 day');

INSERT INTO sspm.activity_events (instance_id, event_id, activity_type, created_at, scan_id) VALUES
  ('22222222-2222-2222-2222-222222222222', 'old', 'admin_login_success', now() - interval '150 days', NULL),
  -- Ingested by a scan that retention prunes, and by one it keeps.
  ('22222222-2222-2222-2222-222222222222', 'recent', 'admin_login_success', now() - interval '10 days',
   'b0000000-0000-0000-0000-000000000002'),
  ('22222222-2222-2222-2222-222222222222', 'latest', 'admin_login_success', now() - interval '1 day',
   'b0000000-0000-0000-0000-000000000003');

INSERT INTO sspm.housekeeping_runs (job, slot, replica) VALUES
  ('retention', now() - interval '100 days', 'old-replica'),
  ('retention', now() - interval '1 day', 'old-replica');
"#;

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_retention_prune_keeps_latest_scans_and_open_findings(pool: PgPool) {
    sqlx::raw_sql(SEED).execute(&pool).await.unwrap();
    let pruned = housekeeping::prune(&pool, 90, 31, Utc::now())
        .await
        .unwrap();

    let mut kept: Vec<String> = sqlx::query_scalar("SELECT id::text FROM sspm.scans ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    kept.sort();
    assert_eq!(
        kept,
        [
            // failing: its latest succeeded scan (the score consumers show) and its latest scan.
            "a0000000-0000-0000-0000-000000000002",
            "a0000000-0000-0000-0000-000000000004",
            // healthy: the recent scan only.
            "b0000000-0000-0000-0000-000000000003",
        ]
    );
    assert_eq!(pruned.scans, 4);
    // Check results go with their scans (cascade); the kept scan keeps its results.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.check_results").await,
        1
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.check_results WHERE scan_id = 'a0000000-0000-0000-0000-000000000002'").await, 1);
    // Findings are never pruned, whatever their status; references to pruned scans are cleared.
    let findings: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT status, first_scan_id::text, last_scan_id::text FROM sspm.findings ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        findings,
        [
            (
                "open".to_string(),
                None,
                Some("a0000000-0000-0000-0000-000000000002".to_string())
            ),
            ("resolved".to_string(), None, None),
        ]
    );
    // History: only the transition within retention remains.
    assert_eq!(pruned.finding_events, 2);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.finding_events WHERE to_status = 'resolved'"
        )
        .await,
        1
    );
    assert_eq!(pruned.activity_events, 1);
    // Kept events that name a pruned scan lose the reference; the others keep theirs.
    let events: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT event_id, scan_id::text FROM sspm.activity_events ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            (
                "latest".to_string(),
                Some("b0000000-0000-0000-0000-000000000003".to_string())
            ),
            ("recent".to_string(), None),
        ]
    );
    assert_eq!(pruned.housekeeping_runs, 1);
    // The consumer view still shows the failing instance's last score.
    let score: Option<f64> =
        sqlx::query_scalar("SELECT latest_score FROM sspm.instance_posture WHERE name = 'failing'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(score, Some(60.0));

    // Idempotent: a second run finds nothing more.
    let again = housekeeping::prune(&pool, 90, 31, Utc::now())
        .await
        .unwrap();
    assert_eq!(again, housekeeping::Pruned::default());
}

/// check_results and activity_events have no foreign key on scans (migration
/// 20261203000020), nor activity_events on instances (20261204000020): removing an
/// instance still removes everything of its scans, through the cascade to its scans and
/// their trigger, and its activity events, through the instances trigger, and nothing of
/// another instance.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn removing_an_instance_removes_its_check_results_and_events_and_nothing_else(pool: PgPool) {
    sqlx::raw_sql(SEED).execute(&pool).await.unwrap();
    // Events of the instance to remove, in two months (two partitions).
    sqlx::raw_sql(
        "INSERT INTO sspm.activity_events (instance_id, event_id, activity_type, created_at, scan_id) VALUES
           ('11111111-1111-1111-1111-111111111111', 'gone-1', 'admin_login_success', now() - interval '40 days', NULL),
           ('11111111-1111-1111-1111-111111111111', 'gone-2', 'admin_logout', now(), 'a0000000-0000-0000-0000-000000000001')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let removed = intercom_sspm::db::instances::remove(
        &pool,
        "11111111-1111-1111-1111-111111111111".parse().unwrap(),
    )
    .await
    .unwrap();
    assert!(removed);
    let left: Vec<(String, String)> =
        sqlx::query_as("SELECT scan_id::text, instance_id::text FROM sspm.check_results")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        left,
        [(
            "b0000000-0000-0000-0000-000000000002".to_string(),
            "22222222-2222-2222-2222-222222222222".to_string()
        )]
    );
    // The other instance's events stay, with their scan references.
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT instance_id::text, event_id FROM sspm.activity_events ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let healthy = "22222222-2222-2222-2222-222222222222".to_string();
    assert_eq!(
        events,
        [
            (healthy.clone(), "latest".to_string()),
            (healthy.clone(), "old".to_string()),
            (healthy, "recent".to_string()),
        ]
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.activity_events WHERE scan_id IS NOT NULL"
        )
        .await,
        2
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_housekeeping_jobs_fire_through_tokio_cron_scheduler(pool: PgPool) {
    sqlx::raw_sql(SEED).execute(&pool).await.unwrap();
    // A muted finding whose exception expired a minute ago: expiry must reopen it.
    sqlx::raw_sql(
        "INSERT INTO sspm.exceptions (id, instance_id, check_id, reason, author, expires_at)
         VALUES ('e0000000-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 'admin_shared_account', 'reviewed', 'sec@example.com', now() - interval '1 minute');
         INSERT INTO sspm.finding_rows (id, instance_id, check_id, resource, status, severity, title, remediation,
                                    first_seen_at, last_seen_at, exception_id)
         VALUES ('f0000000-0000-0000-0000-000000000009', '22222222-2222-2222-2222-222222222222', 'admin_shared_account', 'admin:7', 'muted', 'medium',
                 'Shared teammate account', 'One seat per person', now(), now(), 'e0000000-0000-0000-0000-000000000001');",
    )
    .execute(&pool)
    .await
    .unwrap();

    // Two "replicas", every job every second with one-second slots.
    let plan = Plan {
        expire_exceptions_cron: "* * * * * *".into(),
        expire_exceptions_slot: chrono::Duration::seconds(1),
        retention_cron: "* * * * * *".into(),
        retention_slot: chrono::Duration::seconds(1),
    };
    let settings = Arc::new(support::settings(None, &[]));
    let mut one = housekeeping::start(pool.clone(), settings.clone(), "one".into(), plan.clone())
        .await
        .unwrap();
    let mut two = housekeeping::start(pool.clone(), settings, "two".into(), plan)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let expired = count(&pool, "SELECT count(*) FROM sspm.housekeeping_runs WHERE job = 'expire_exceptions' AND finished_at IS NOT NULL").await;
        let pruned = count(&pool, "SELECT count(*) FROM sspm.housekeeping_runs WHERE job = 'retention' AND finished_at IS NOT NULL AND slot > now() - interval '1 minute'").await;
        if expired >= 2 && pruned >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not fire: {expired} expiry runs, {pruned} retention runs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();

    let status: String = sqlx::query_scalar(
        "SELECT status FROM sspm.findings WHERE id = 'f0000000-0000-0000-0000-000000000009'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "open", "expired exception no longer mutes");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans").await,
        3,
        "retention ran"
    );
    // Both replicas fired every second; the finding was reopened by exactly one run.
    let reopened: i64 = sqlx::query_scalar("SELECT COALESCE(sum((detail->>'reopened')::bigint), 0)::bigint FROM sspm.housekeeping_runs WHERE job = 'expire_exceptions'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reopened, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.finding_events WHERE finding_id = 'f0000000-0000-0000-0000-000000000009' AND reason = 'exception expired'").await, 1);
}

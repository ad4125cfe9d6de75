//! The per-instance summary on `sspm.instances` (migration 20261202000010): the migration
//! fills it for rows that existed before it, and afterwards it equals what
//! `sspm.instance_posture` computes from the scans and findings, whoever writes them.
//! The scan path is covered in `scans` (instance_summary_follows_...).

use std::borrow::Cow;

use sqlx::PgPool;

const SUMMARY: &str = "20261202000010";

async fn stored_vs_computed(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let stored = sqlx::query_scalar(
        "SELECT concat_ws(' ', name, last_succeeded_scan_id, last_score, last_coverage, open_critical,
                          open_high, open_medium, open_low, open_info, open_total)
         FROM sspm.instances ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let computed = sqlx::query_scalar(
        "SELECT concat_ws(' ', name, latest_scan_id, latest_score, latest_coverage, open_critical,
                          open_high, open_medium, open_low, open_info, open_total)
         FROM sspm.instance_posture ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (stored, computed)
}

#[sqlx::test(migrations = false)]
async fn the_migration_backfills_existing_instances(pool: PgPool) {
    // sqlx keeps its history unqualified, and the role's default search_path ("$user")
    // would find it in schema sspm once that exists: pin it to public as the daemon does.
    let opts = (*pool.connect_options())
        .clone()
        .options([("search_path", "public")]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap();
    // The schema as it was before the summary, with a fleet already scanned.
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new("migrations"))
        .await
        .unwrap();
    before.migrations = Cow::Owned(
        intercom_sspm::db::MIGRATOR
            .iter()
            .filter(|m| m.version < SUMMARY.parse::<i64>().unwrap())
            .cloned()
            .collect(),
    );
    before.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO sspm.instances (name, region, token_ref)
         SELECT 'inst-' || g, 'us', 'env:T' FROM generate_series(1, 6) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Per instance: an older and a newer succeeded scan, a newer failed one (skipped),
    // none at all for inst-6; findings of every status and severity.
    sqlx::query(
        "INSERT INTO sspm.scans (instance_id, status, trigger, started_at, finished_at, score, coverage)
         SELECT i.id, s.status, 'schedule', now() - s.ago, now() - s.ago + interval '1 minute',
                CASE WHEN s.status = 'succeeded' THEN s.score + length(i.name) END, 0.5
         FROM sspm.instances i,
              (VALUES ('succeeded', interval '3 days', 10), ('succeeded', interval '2 days', 60),
                      ('failed', interval '1 day', NULL)) s (status, ago, score)
         WHERE i.name <> 'inst-6'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.findings (instance_id, check_id, resource, status, severity, title, remediation,
                                    first_seen_at, last_seen_at, resolved_at)
         SELECT i.id, 'admin_external_domain', 'admin:' || k,
                (ARRAY['open', 'open', 'muted', 'resolved'])[1 + k % 4],
                (ARRAY['critical', 'high', 'medium', 'low', 'info'])[1 + (k * length(i.name)) % 5],
                't', 'r', now(), now(), CASE WHEN k % 4 = 3 THEN now() END
         FROM sspm.instances i, generate_series(1, 17) k
         WHERE i.name <> 'inst-5'",
    )
    .execute(&pool)
    .await
    .unwrap();

    intercom_sspm::db::MIGRATOR.run(&pool).await.unwrap();
    let (stored, computed) = stored_vs_computed(&pool).await;
    assert_eq!(stored, computed);
    let scored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sspm.instances WHERE last_score > 60 AND open_total > 0",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        scored, 4,
        "the newer succeeded scan, and open counts: {stored:?}"
    );

    // And the triggers keep it from there: a reclassified severity, a resolved finding, a
    // pruned latest scan, a removed instance.
    sqlx::query("UPDATE sspm.finding_rows SET severity = 'info' WHERE resource = 'admin:1'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE sspm.finding_rows SET status = 'resolved', resolved_at = now() WHERE resource = 'admin:2'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "DELETE FROM sspm.scans WHERE score > 60 AND instance_id = (SELECT id FROM sspm.instances WHERE name = 'inst-1')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM sspm.instances WHERE name = 'inst-2'")
        .execute(&pool)
        .await
        .unwrap();
    let (stored, computed) = stored_vs_computed(&pool).await;
    assert_eq!(stored, computed);
    assert!(
        stored[0].starts_with("inst-1 ") && stored[0].contains(" 16 "),
        "{}",
        stored[0]
    );

    // Updates by row (20261202000040): a bump that moves no count, a finding moved to
    // another instance, and an upsert whose conflict reopens a resolved finding and mutes
    // an open one while inserting a new open one.
    sqlx::query("UPDATE sspm.finding_rows SET last_seen_at = now(), title = 'bumped'")
        .execute(&pool)
        .await
        .unwrap();
    let (after_bump, computed) = stored_vs_computed(&pool).await;
    assert_eq!(after_bump, computed);
    assert_eq!(after_bump, stored, "a bump changes no count");
    sqlx::query(
        "UPDATE sspm.finding_rows SET instance_id = (SELECT id FROM sspm.instances WHERE name = 'inst-5')
         WHERE resource = 'admin:5' AND instance_id = (SELECT id FROM sspm.instances WHERE name = 'inst-3')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.finding_rows (instance_id, check_id, resource, status, severity, title, remediation,
                                    first_seen_at, last_seen_at)
         SELECT i.id, 'admin_external_domain', r.resource, r.status, 'high', 't', 'r', now(), now()
         FROM sspm.instances i,
              (VALUES ('admin:3', 'open'), ('admin:4', 'muted'), ('admin:99', 'open')) r (resource, status)
         WHERE i.name = 'inst-4'
         ON CONFLICT (instance_id, check_id, resource) DO UPDATE
             SET status = EXCLUDED.status, severity = EXCLUDED.severity, resolved_at = NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (moved, computed) = stored_vs_computed(&pool).await;
    assert_eq!(moved, computed);
    assert_ne!(moved, stored, "the move and the upsert changed counts");
}

/// `leases::record_scan_end` writes a succeeded scan's score into the summary itself (so the
/// scans trigger has nothing left to write); the trigger still decides which scan is the
/// latest: a scan that started earlier and finished later does not replace it.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_scan_end_sets_the_summary_and_the_latest_started_scan_stays_latest(pool: PgPool) {
    use intercom_sspm::db::{instances::InstanceScanUpdate, leases, scans::ScanTotals};
    use intercom_sspm::status::ScanStatus;
    use uuid::Uuid;

    let instance: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.instances (name, region, token_ref) VALUES ('inst', 'us', 'env:T') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let running = |ago: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO sspm.scans (instance_id, status, trigger, started_at)
                 VALUES ($1, 'running', 'manual', now() - $2::interval) RETURNING id",
            )
            .bind(instance)
            .bind(ago)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let earlier = running("10 minutes").await;
    let later = running("5 minutes").await;
    let end = |scan_id: Uuid, status: ScanStatus, score: Option<f64>| {
        let pool = pool.clone();
        async move {
            let totals = ScanTotals {
                status,
                error: None,
                error_kind: None,
                score,
                coverage: score.map(|_| 0.5),
                api_calls: 3,
                admins_seen: None,
                events_ingested: None,
                new_findings: Some(0),
                resolved_findings: Some(0),
                open_findings: Some(0),
            };
            let mut conn = pool.acquire().await.unwrap();
            leases::record_scan_end(
                &mut conn,
                instance,
                leases::ScanRowEnd {
                    totals: &totals,
                    notify_findings: None,
                },
                &InstanceScanUpdate {
                    status: None,
                    status_detail: None,
                    scan_id,
                    at: chrono::Utc::now(),
                    succeeded: status == ScanStatus::Succeeded,
                    findings_seen_at: None,
                    workspace_id: None,
                    workspace_name: None,
                    activity_cursor_at: None,
                    activity_covered_from: None,
                    failure: status != ScanStatus::Succeeded,
                },
                None,
            )
            .await
            .unwrap()
        }
    };
    let summary = || async {
        sqlx::query_as::<_, (Option<Uuid>, Option<f64>)>(
            "SELECT last_succeeded_scan_id, last_score FROM sspm.instances WHERE id = $1",
        )
        .bind(instance)
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    let written = end(later, ScanStatus::Succeeded, Some(80.0)).await;
    assert_eq!(
        written,
        leases::ScanEndWritten {
            scan_finished: true,
            instance_updated: true
        }
    );
    assert_eq!(summary().await, (Some(later), Some(80.0)));
    let (stored, computed) = stored_vs_computed(&pool).await;
    assert_eq!(stored, computed);

    // The earlier-started scan finishes last: the later-started one is still the latest.
    end(earlier, ScanStatus::Succeeded, Some(20.0)).await;
    assert_eq!(summary().await, (Some(later), Some(80.0)));
    let (stored, computed) = stored_vs_computed(&pool).await;
    assert_eq!(stored, computed);

    // A scan row that is no longer running is not finished again.
    let again = end(later, ScanStatus::Failed, None).await;
    assert!(!again.scan_finished);
}

//! Scans end to end against the simulator and real Postgres: exactly the expected
//! findings, lifecycle across scans, failures that change nothing, exceptions.

use std::collections::BTreeSet;

use intercom_sim::AdminSpec;
use intercom_sspm::db::instances;
use intercom_sspm::db::scans::Trigger;
use intercom_sspm::region::Region;
use intercom_sspm::scan::ScanOutcome;
use intercom_sspm::status::CheckStatus;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{count, sim, Onboard, World};

const RISKY_TOKEN: &str = "tok_risky_acme_full_0001";
const HEALTHY_TOKEN: &str = "tok_healthy_initech_0002";
const LEAST_TOKEN: &str = "tok_least_globex_0003";

/// A workspace with one of each problem the catalog can see.
fn risky_workspace() -> serde_json::Value {
    let login = |id: &str, admin: &str, ago: &str, method: &str| {
        json!({ "id": id, "activity_type": "admin_login_success", "ago": ago, "performed_by": admin,
                "ip": "198.51.100.7", "metadata": { "sign_in_method": method } })
    };
    let mut events = vec![
        login("l1", "1", "1d", "google"),
        login("l2", "2", "1d", "email_password"),
        login("l3", "3", "2d", "google"),
        login("l4", "4", "2d", "google"),
        login("l5", "5", "3d", "google"),
        login("l6", "6", "3d", "google"),
    ];
    // Six failures from one IP within 30 minutes, then a success from it: critical burst.
    for i in 0..6 {
        events.push(
            json!({ "id": format!("f{i}"), "activity_type": "admin_login_failure",
            "ago": format!("{}m", 300 - i * 3), "performed_by": "3", "ip": "203.0.113.9" }),
        );
    }
    events.push(
        json!({ "id": "f-success", "activity_type": "admin_login_success", "ago": "4h",
        "performed_by": "3", "ip": "203.0.113.9", "metadata": { "sign_in_method": "google" } }),
    );
    events.push(
        json!({ "id": "tfa", "activity_type": "admin_two_factor_auth_change", "ago": "5d",
        "performed_by": "1", "metadata": { "before": "enabled", "after": "disabled" } }),
    );
    events.push(json!({ "id": "export", "activity_type": "app_data_export", "ago": "6d", "performed_by": "1" }));
    events.push(json!({ "id": "install", "activity_type": "app_package_installation", "ago": "7d", "performed_by": "1" }));
    events.push(json!({ "id": "imp", "activity_type": "admin_impersonation_start", "ago": "2d", "performed_by": "1" }));
    // Old events outside every window, and a type no check knows.
    events.push(json!({ "id": "old-export", "activity_type": "app_data_export", "ago": "60d", "performed_by": "1" }));
    events.push(json!({ "id": "novel", "activity_type": "brand_new_event_type_2027", "ago": "1d", "performed_by": "1" }));
    json!({
        "id_code": "acme",
        "name": "Acme",
        "region": "us",
        "identity_verification": false,
        "tokens": [{ "token": RISKY_TOKEN, "scopes": ["read_admins", "read_admin_activity_logs", "read_tags"] }],
        "admins": [
            { "id": "1", "name": "Owner", "email": "owner@acme.example", "email_verified": true, "role": { "id": "r1", "name": "Admin" } },
            { "id": "2", "name": "Jane", "email": "jane.doe@gmail.com", "role": { "id": "r2", "name": "Agent" } },
            { "id": "3", "name": "Support", "email": "support@acme.example", "role": { "id": "r2", "name": "Agent" } },
            { "id": "4", "name": "Bob", "email": "bob@contractor.example", "role": { "id": "r2", "name": "Agent" } },
            { "id": "5", "name": "Nora", "email": "nora@acme.example" },
            { "id": "6", "name": "Alice", "email": "alice@acme.example", "away_mode_enabled": true, "role": { "id": "r2", "name": "Agent" } }
        ],
        "events": events
    })
}

/// The three workspaces above; tests onboard the ones they scan.
async fn world(pool: &PgPool) -> World {
    World::builder(pool)
        .workspace(risky_workspace())
        .workspace(sim::workspace_json(
            "initech",
            "eu",
            HEALTHY_TOKEN,
            &["read_admins", "read_admin_activity_logs"],
        ))
        .workspace(sim::workspace_json(
            "globex",
            "au",
            LEAST_TOKEN,
            &["read_admins"],
        ))
        .build()
        .await
}

async fn open_findings(pool: &PgPool, instance: Uuid) -> BTreeSet<(String, String)> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT check_id, resource FROM sspm.findings WHERE instance_id = $1 AND status = 'open'",
    )
    .bind(instance)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn risky_workspace_yields_exactly_the_expected_findings(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    let report = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Succeeded, "{:?}", report.error);

    let expected = set(&[
        ("identity_verification_enabled", "workspace"),
        ("token_least_privilege", "workspace"),
        ("admin_personal_email_domain", "admin:2"),
        ("admin_external_domain", "admin:4"),
        ("admin_shared_account", "admin:3"),
        ("admin_without_role", "admin:5"),
        ("password_login_used", "admin:2"),
        ("failed_login_burst", "event:f0"),
        ("admin_2fa_disabled", "event:tfa"),
        ("data_exported", "event:export"),
        ("integration_changed", "event:install"),
        ("impersonation", "event:imp"),
    ]);
    assert_eq!(open_findings(&pool, acme.id).await, expected);

    let burst: String = sqlx::query_scalar(
        "SELECT severity FROM sspm.findings WHERE check_id = 'failed_login_burst'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(burst, "critical", "a success from the bursting IP follows");
    // One check result per catalog entry, recorded with the scan.
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM sspm.check_results WHERE scan_id = '{}'",
                report.scan_id
            )
        )
        .await,
        intercom_sspm::checks::catalog().len() as i64
    );
    let (status, score, coverage): (String, Option<f64>, Option<f64>) =
        sqlx::query_as("SELECT status, score, coverage FROM sspm.scans WHERE id = $1")
            .bind(report.scan_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "succeeded");
    assert!(score.unwrap() < 100.0 && score.unwrap() > 0.0, "{score:?}");
    assert!(
        coverage.unwrap() > 0.5 && coverage.unwrap() < 1.0,
        "manual controls are not covered: {coverage:?}"
    );
    // Inventory and history were written; the unknown event type was stored, not rejected.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.admins WHERE removed_at IS NULL"
        )
        .await,
        6
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.activity_events WHERE event_id = 'novel'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.finding_events WHERE from_status IS NULL"
        )
        .await,
        12
    );
    let instance_status: String =
        sqlx::query_scalar("SELECT status FROM sspm.instances WHERE id = $1")
            .bind(acme.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(instance_status, "ok");
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn healthy_workspace_yields_no_findings(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let initech = w
        .onboard(&Onboard::new("initech").region(Region::Eu), HEALTHY_TOKEN)
        .await;
    let report = scanner.scan(&initech, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Succeeded, "{:?}", report.error);
    let failing: Vec<_> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, CheckStatus::Fail | CheckStatus::Error))
        .collect();
    assert!(failing.is_empty(), "{failing:#?}");
    assert!(open_findings(&pool, initech.id).await.is_empty());
    assert_eq!(report.score, Some(100.0));
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn least_privilege_token_reports_activity_checks_not_evaluated(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let globex = w
        .onboard(&Onboard::new("globex").region(Region::Au), LEAST_TOKEN)
        .await;
    let report = scanner.scan(&globex, Trigger::Manual, None).await.unwrap();
    assert_eq!(
        report.status,
        ScanOutcome::Succeeded,
        "a scope refusal is not a failed scan"
    );
    assert_eq!(
        open_findings(&pool, globex.id).await,
        set(&[("activity_log_access", "workspace")])
    );
    let activity_checks: Vec<_> = intercom_sspm::checks::catalog()
        .iter()
        .filter(|m| m.source == intercom_sspm::checks::Source::Activity)
        .map(|m| m.id)
        .collect();
    assert!(activity_checks.len() >= 10);
    for id in activity_checks {
        let line = report.checks.iter().find(|c| c.check_id == id).unwrap();
        assert_eq!(line.status, CheckStatus::NotEvaluated, "{id}");
        assert!(
            line.reason
                .as_deref()
                .unwrap_or("")
                .contains("activity logs"),
            "{id}: {:?}",
            line.reason
        );
    }
    let evidence: serde_json::Value = sqlx::query_scalar(
        "SELECT evidence FROM sspm.findings WHERE check_id = 'activity_log_access'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        evidence.to_string().contains("admin_dormant"),
        "evidence lists what is not evaluated: {evidence}"
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn rescans_resolve_reopen_and_record_history(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    let handle = w.sim.scenario_handle();
    scanner.scan(&acme, Trigger::Manual, None).await.unwrap();

    // Fixed in Intercom: identity verification on; a new gmail teammate appears.
    handle
        .update_workspace("acme", |w| w.identity_verification = true)
        .unwrap();
    handle
        .add_admin(
            "acme",
            serde_json::from_value::<AdminSpec>(json!({ "id": "7", "name": "Kim", "email": "kim@gmail.com", "role": { "id": "r2", "name": "Agent" } })).unwrap(),
        )
        .unwrap();
    let second = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(second.status, ScanOutcome::Succeeded);
    let open = open_findings(&pool, acme.id).await;
    assert!(!open.contains(&("identity_verification_enabled".into(), "workspace".into())));
    assert!(open.contains(&("admin_personal_email_domain".into(), "admin:7".into())));
    assert!(
        open.contains(&("admin_new".into(), "admin:7".into())),
        "new since the previous scan"
    );
    assert_eq!(second.resolved_findings, 1);

    // Regression: turned off again. Same finding reopens, first_seen kept.
    handle
        .update_workspace("acme", |w| w.identity_verification = false)
        .unwrap();
    let third = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(third.status, ScanOutcome::Succeeded);
    let (status, reopen_count, first_seen_scan): (String, i32, Option<Uuid>) = sqlx::query_as(
        "SELECT status, reopen_count, first_scan_id FROM sspm.findings WHERE check_id = 'identity_verification_enabled'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "open");
    assert_eq!(reopen_count, 1);
    assert_ne!(
        first_seen_scan,
        Some(third.scan_id),
        "first seen stays with the first scan"
    );
    let history: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT e.from_status, e.to_status FROM sspm.finding_events e JOIN sspm.findings f ON f.id = e.finding_id
         WHERE f.check_id = 'identity_verification_enabled' ORDER BY e.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        vec![
            (None, "open".to_string()),
            (Some("open".to_string()), "resolved".to_string()),
            (Some("resolved".to_string()), "open".to_string()),
        ]
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn revoked_token_marks_unauthorized_and_resolves_nothing(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    let before = open_findings(&pool, acme.id).await;
    assert!(!before.is_empty());

    w.sim.scenario_handle().revoke_token(RISKY_TOKEN).unwrap();
    let report = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Failed);
    assert_eq!(report.error_kind.as_deref(), Some("unauthorized"));
    assert!(!report.error.clone().unwrap().contains(RISKY_TOKEN));
    let (status, detail): (String, Option<String>) =
        sqlx::query_as("SELECT status, status_detail FROM sspm.instances WHERE id = $1")
            .bind(acme.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "unauthorized");
    assert!(detail.unwrap().contains("401"));
    let mut after = open_findings(&pool, acme.id).await;
    assert!(
        after.remove(&("token_valid".to_string(), "workspace".to_string())),
        "token_valid finding opened"
    );
    assert_eq!(after, before, "no other finding changed");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.findings WHERE status = 'resolved'"
        )
        .await,
        0
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn scan_killed_before_commit_leaves_previous_state_intact(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    let snapshot = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, String, String, chrono::DateTime<chrono::Utc>)>(
            "SELECT check_id, resource, status, last_seen_at FROM sspm.findings ORDER BY check_id, resource",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = snapshot(pool.clone()).await;
    let results_before = count(&pool, "SELECT count(*) FROM sspm.check_results").await;

    // A change that would resolve a finding, then a scan whose row was meanwhile taken
    // over (abandoned): the transaction fails after writing findings and must roll back.
    w.sim
        .scenario_handle()
        .update_workspace("acme", |w| w.identity_verification = true)
        .unwrap();
    let lease = Uuid::new_v4();
    let scan_id = Uuid::new_v4();
    sqlx::query("UPDATE sspm.instances SET lease_token = $2, lease_expires_at = now() + interval '1 minute' WHERE id = $1")
        .bind(acme.id)
        .bind(lease)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sspm.scans (id, instance_id, status, trigger, finished_at) VALUES ($1, $2, 'abandoned', 'schedule', now())")
        .bind(scan_id)
        .bind(acme.id)
        .execute(&pool)
        .await
        .unwrap();
    let fence = intercom_sspm::scan::Fence {
        lease_token: lease,
        scan_id: Some(scan_id),
        next: intercom_sspm::scan::NextDue::Keep(chrono::Utc::now()),
    };
    let err = scanner
        .scan(&acme, Trigger::Schedule, Some(fence))
        .await
        .unwrap_err();
    assert!(
        matches!(err, intercom_sspm::scan::ScanError::LeaseLost(_)),
        "{err}"
    );
    assert_eq!(snapshot(pool.clone()).await, before, "findings untouched");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.check_results").await,
        results_before
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn exceptions_mute_and_expire(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    let first = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();

    let (exception, muted) = intercom_sspm::db::exceptions::add(
        &pool,
        &intercom_sspm::db::exceptions::NewException {
            instance_id: acme.id,
            check_id: "admin_external_domain",
            resource: Some("admin:4"),
            reason: "contractor approved",
            author: "test",
            expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            force: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(muted, 1);
    let second = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    let status: String = sqlx::query_scalar(
        "SELECT status FROM sspm.findings WHERE check_id = 'admin_external_domain'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "muted", "still muted after a rescan");
    assert!(
        second.score.unwrap() > first.score.unwrap(),
        "muted failures do not count against the score"
    );

    // Expiry: the exception's time passes, housekeeping reopens the finding.
    sqlx::query(
        "UPDATE sspm.exceptions SET expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(exception)
    .execute(&pool)
    .await
    .unwrap();
    let reopened = intercom_sspm::db::exceptions::expire(&pool, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(reopened, 1);
    let status: String = sqlx::query_scalar(
        "SELECT status FROM sspm.findings WHERE check_id = 'admin_external_domain'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "open");
    // And a rescan after expiry keeps it open (the exception no longer applies).
    scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    let status: String = sqlx::query_scalar(
        "SELECT status FROM sspm.findings WHERE check_id = 'admin_external_domain'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "open");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.finding_events WHERE reason IN ('exception added', 'exception expired')").await,
        2
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn rate_limited_activity_log_snoozes_the_scan_instead_of_erroring_checks(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let initech = w
        .onboard(&Onboard::new("initech").region(Region::Eu), HEALTHY_TOKEN)
        .await;
    let faults = serde_json::from_value(json!({
        "endpoints": ["/admins/activity_logs"],
        "rate_limited": { "reset_after_secs": 120 }
    }))
    .unwrap();
    w.sim
        .scenario_handle()
        .set_token_faults(HEALTHY_TOKEN, faults)
        .unwrap();
    let report = scanner.scan(&initech, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Failed);
    assert_eq!(report.error_kind.as_deref(), Some("rate_limited"));
    let reset = report
        .rate_limited_reset
        .expect("the scheduler is told to snooze");
    assert!(reset.as_secs() >= 100, "{reset:?}");
    assert!(!report.counts_as_failure);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.check_results").await,
        0,
        "no check recorded as error"
    );
    let failures: i32 = sqlx::query_scalar("SELECT consecutive_failures FROM sspm.instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(failures, 0);
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sql_onboarded_instance_learns_its_workspace_and_never_duplicates_one(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("initech.token");
    std::fs::write(&token_file, format!("{HEALTHY_TOKEN}\n")).unwrap();
    // As docs/DATABASE.md shows: plain SQL, a token reference, no workspace id yet.
    sqlx::query("INSERT INTO sspm.instances (name, region, token_ref, schedule) VALUES ('from-sql', 'eu', $1, '6h')")
        .bind(format!("file:{}", token_file.display()))
        .execute(&pool)
        .await
        .unwrap();
    let row = instances::get(&pool, "from-sql").await.unwrap();
    let report = scanner.scan(&row, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Succeeded, "{:?}", report.error);
    let (workspace, name): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT workspace_id, workspace_name FROM sspm.instances WHERE name = 'from-sql'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(workspace.as_deref(), Some("initech"));
    assert_eq!(name.as_deref(), Some("initech Inc"));

    // A second SQL row for the same workspace fails clearly instead of double-scanning it.
    sqlx::query(
        "INSERT INTO sspm.instances (name, region, token_ref) VALUES ('dup-sql', 'eu', $1)",
    )
    .bind(format!("file:{}", token_file.display()))
    .execute(&pool)
    .await
    .unwrap();
    let dup = instances::get(&pool, "dup-sql").await.unwrap();
    let report = scanner.scan(&dup, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Failed);
    assert_eq!(report.error_kind.as_deref(), Some("workspace_taken"));
    assert!(report
        .error
        .unwrap()
        .contains("already onboarded as instance \"from-sql\""));
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn persistent_5xx_fails_the_scan_and_leaves_findings_untouched(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    let before = open_findings(&pool, acme.id).await;

    let faults = serde_json::from_value(json!({
        "endpoints": ["/admins"],
        "server_error": { "status": 503 }
    }))
    .unwrap();
    w.sim
        .scenario_handle()
        .set_token_faults(RISKY_TOKEN, faults)
        .unwrap();
    let calls_before = w.sim.request_count();
    let report = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Failed);
    assert_eq!(report.error_kind.as_deref(), Some("unreachable"));
    assert!(
        report.error.as_deref().unwrap().contains("/admins"),
        "{:?}",
        report.error
    );
    // Retries are bounded (max_retries = 1 in the test settings): /me, /admins twice.
    assert_eq!(w.sim.request_count() - calls_before, 3);
    let mut after = open_findings(&pool, acme.id).await;
    after.remove(&("api_reachable".to_string(), "workspace".to_string()));
    assert_eq!(
        after, before,
        "no finding resolved or changed by the failed scan"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM sspm.instances WHERE id = $1")
        .bind(acme.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "unreachable");
    w.sim.shutdown().await;
}

/// Issue 15 item 8: `/me` answers, then the scan's time budget runs out on `/admins` (a host
/// that hangs). The scan marks the instance `unreachable`, and `api_reachable` fails with it
/// (it used to pass in the same scan).
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_used_up_time_budget_fails_api_reachable_as_it_marks_the_instance_unreachable(
    pool: PgPool,
) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[("SSPM__INTERCOM__SCAN_TIMEOUT", "1s")]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    w.slow("acme", "/admins", 3_000);
    let report = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Failed);
    assert_eq!(report.error_kind.as_deref(), Some("timeout"), "{report:?}");
    assert_eq!(
        report.instance_status,
        intercom_sspm::status::InstanceStatus::Unreachable
    );
    let (status, reason): (String, Option<String>) = sqlx::query_as(
        "SELECT status, reason FROM sspm.check_results WHERE scan_id = $1 AND check_id = 'api_reachable'",
    )
    .bind(report.scan_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "fail", "{reason:?}");
    let title: String = sqlx::query_scalar(
        "SELECT title FROM sspm.findings WHERE instance_id = $1 AND check_id = 'api_reachable' AND status = 'open'",
    )
    .bind(acme.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(title.contains("intercom.scan_timeout"), "{title}");
    let instance_status: String =
        sqlx::query_scalar("SELECT status FROM sspm.instances WHERE id = $1")
            .bind(acme.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(instance_status, "unreachable");
    w.sim.shutdown().await;
}

/// The instance's stored summary (migration 20261202000010) and the same figures as
/// `sspm.instance_posture` computes them from the scans and findings: (latest succeeded
/// scan, score, coverage, open critical/high/medium/low/info/total).
type Summary = (Option<Uuid>, Option<f64>, Option<f64>, [i64; 6]);

/// A summary as one row: the three scan columns, then the six counts.
type SummaryRow = (
    Option<Uuid>,
    Option<f64>,
    Option<f64>,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

async fn summary_row(pool: &PgPool, sql: &str, instance: Uuid) -> Summary {
    let r: SummaryRow = sqlx::query_as(sql)
        .bind(instance)
        .fetch_one(pool)
        .await
        .unwrap();
    (r.0, r.1, r.2, [r.3, r.4, r.5, r.6, r.7, r.8])
}

async fn stored_and_computed_summary(pool: &PgPool, instance: Uuid) -> (Summary, Summary) {
    let stored = summary_row(
        pool,
        "SELECT last_succeeded_scan_id, last_score, last_coverage, open_critical, open_high,
                open_medium, open_low, open_info, open_total
         FROM sspm.instances WHERE id = $1",
        instance,
    )
    .await;
    let computed = summary_row(
        pool,
        "SELECT latest_scan_id, latest_score, latest_coverage, open_critical, open_high,
                open_medium, open_low, open_info, open_total
         FROM sspm.instance_posture WHERE id = $1",
        instance,
    )
    .await;
    (stored, computed)
}

/// The report's open findings per severity, in the summary's order, with the total.
fn report_open(report: &intercom_sspm::scan::ScanReport) -> [i64; 6] {
    let n = |s: &str| report.open_by_severity.get(s).copied().unwrap_or(0);
    let by = [n("critical"), n("high"), n("medium"), n("low"), n("info")];
    [by[0], by[1], by[2], by[3], by[4], by.iter().sum()]
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn instance_summary_follows_scans_failures_and_exceptions(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    let (stored, computed) = stored_and_computed_summary(&pool, acme.id).await;
    assert_eq!(stored, (None, None, None, [0; 6]), "nothing before a scan");
    assert_eq!(stored, computed);

    // A succeeded scan: its own score, coverage and open counts.
    let first = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(first.status, ScanOutcome::Succeeded);
    let (stored, computed) = stored_and_computed_summary(&pool, acme.id).await;
    assert_eq!(stored, computed);
    assert_eq!(
        (stored.0, stored.1, stored.2),
        (Some(first.scan_id), first.score, first.coverage)
    );
    assert_eq!(stored.3, report_open(&first));
    assert!(stored.3[5] > 0 && stored.3[1] > 0, "{:?}", stored.3);

    // An exception mutes a high finding: one open high fewer at once, no scan needed.
    let (exception, muted) = intercom_sspm::db::exceptions::add(
        &pool,
        &intercom_sspm::db::exceptions::NewException {
            instance_id: acme.id,
            check_id: "admin_external_domain",
            resource: Some("admin:4"),
            reason: "contractor approved",
            author: "test",
            expires_at: None,
            force: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(muted, 1);
    let severity: String = sqlx::query_scalar(
        "SELECT severity FROM sspm.findings WHERE check_id = 'admin_external_domain' AND resource = 'admin:4'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let col = ["critical", "high", "medium", "low", "info"]
        .iter()
        .position(|s| *s == severity)
        .unwrap();
    let (muted_stored, computed) = stored_and_computed_summary(&pool, acme.id).await;
    assert_eq!(muted_stored, computed);
    let mut expected = stored.3;
    expected[col] -= 1;
    expected[5] -= 1;
    assert_eq!(
        muted_stored.3, expected,
        "the muted finding left the open counts"
    );
    assert_eq!(muted_stored.1, first.score, "the score is the last scan's");

    // A failed scan keeps the previous score and coverage; its open counts are what the
    // findings now are (the health finding it opened included).
    w.sim.scenario_handle().revoke_token(RISKY_TOKEN).unwrap();
    let failed = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(failed.status, ScanOutcome::Failed);
    let (stored, computed) = stored_and_computed_summary(&pool, acme.id).await;
    assert_eq!(stored, computed);
    assert_eq!(
        (stored.0, stored.1, stored.2),
        (Some(first.scan_id), first.score, first.coverage),
        "a failed scan keeps the previous values"
    );
    assert_eq!(stored.3[5], muted_stored.3[5] + 1, "token_valid opened");

    // Removing the exception reopens the finding.
    intercom_sspm::db::exceptions::remove(&pool, exception)
        .await
        .unwrap()
        .unwrap();
    let (stored, computed) = stored_and_computed_summary(&pool, acme.id).await;
    assert_eq!(stored, computed);
    assert_eq!(stored.3[col], muted_stored.3[col] + 1);

    // Another instance's scan changes only its own summary: no findings, its own score.
    let healthy = w
        .onboard(&Onboard::new("initech").region(Region::Eu), HEALTHY_TOKEN)
        .await;
    let report = scanner.scan(&healthy, Trigger::Manual, None).await.unwrap();
    let (stored, computed) = stored_and_computed_summary(&pool, healthy.id).await;
    assert_eq!(stored, computed);
    assert_eq!(
        (stored.0, stored.1, stored.2, stored.3),
        (Some(report.scan_id), report.score, report.coverage, [0; 6])
    );
    let (acme_now, _) = stored_and_computed_summary(&pool, acme.id).await;
    assert_eq!(acme_now.1, first.score);
    w.sim.shutdown().await;
}

/// More teammates than one inventory statement takes (5,000) and more findings than one
/// findings statement takes (2,000): the leading chunks and the last one (which also carries
/// the bump of rows seen again, the resolutions and the history) together write every row
/// once, and a re-scan after 100 teammates left resolves exactly theirs.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn workspaces_larger_than_one_write_chunk_are_written_whole(pool: PgPool) {
    const TEAMMATES: usize = 5_100;
    const TOKEN: &str = "tok_large_umbrella_0004";
    let admins: Vec<serde_json::Value> = (1..=TEAMMATES)
        .map(|i| {
            json!({ "id": i.to_string(), "name": format!("User {i}"),
                    "email": format!("user{i}@gmail.com"), "role": { "id": "r2", "name": "Agent" } })
        })
        .collect();
    let w = World::builder(&pool)
        .workspace(json!({
            "id_code": "umbrella", "name": "Umbrella", "region": "us",
            "tokens": [{ "token": TOKEN, "scopes": ["read_admins"] }],
            "admins": admins,
        }))
        .build()
        .await;
    let scanner = w.scanner(&[]);
    let umbrella = w.onboard(&Onboard::new("umbrella"), TOKEN).await;
    let first = scanner
        .scan(&umbrella, Trigger::Manual, None)
        .await
        .unwrap();
    assert_eq!(first.status, ScanOutcome::Succeeded, "{:?}", first.error);
    let personal = "SELECT count(*) FROM sspm.findings
                    WHERE check_id = 'admin_personal_email_domain' AND status = 'open'";
    assert_eq!(count(&pool, personal).await, TEAMMATES as i64);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.admins WHERE removed_at IS NULL"
        )
        .await,
        TEAMMATES as i64
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.finding_events").await,
        count(&pool, "SELECT count(*) FROM sspm.findings").await,
        "one history row per new finding"
    );
    let results: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sspm.check_results WHERE scan_id = $1")
            .bind(first.scan_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(results, first.checks.len() as i64);

    let handle = w.sim.scenario_handle();
    for i in 1..=100 {
        assert!(handle.remove_admin("umbrella", &i.to_string()).unwrap());
    }
    let second = scanner
        .scan(&umbrella, Trigger::Manual, None)
        .await
        .unwrap();
    assert_eq!(second.status, ScanOutcome::Succeeded, "{:?}", second.error);
    assert_eq!(count(&pool, personal).await, TEAMMATES as i64 - 100);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.findings
                      WHERE check_id = 'admin_personal_email_domain' AND status = 'resolved'
                        AND resource IN (SELECT 'admin:' || g FROM generate_series(1, 100) g)"
        )
        .await,
        100,
        "the leavers' findings, and only theirs, are resolved"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.admins WHERE removed_at IS NOT NULL"
        )
        .await,
        100
    );
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sspm.findings WHERE status = 'open' AND last_scan_id <> $1",
    )
    .bind(second.scan_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        stale, 0,
        "every finding seen again moved to the second scan"
    );
    // Teammates seen again (one statement per chunk) and findings seen again carry the
    // second scan's time, and only it.
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT last_seen_at) FROM sspm.admins WHERE removed_at IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.admins a WHERE removed_at IS NULL AND last_seen_at <>
                 (SELECT max(last_seen_at) FROM sspm.findings WHERE status = 'open')"
        )
        .await,
        0
    );
    w.sim.shutdown().await;
}

/// `last_seen_at`/`last_scan_id` of `sspm.findings` as a reader sees them, and the stored
/// row's `xmin` (it changes when a scan rewrites the row).
async fn seen(
    pool: &PgPool,
    instance: Uuid,
    check: &str,
) -> (Option<Uuid>, chrono::DateTime<chrono::Utc>, String) {
    sqlx::query_as(
        "SELECT f.last_scan_id, f.last_seen_at, r.xmin::text
         FROM sspm.findings f JOIN sspm.finding_rows r ON r.id = f.id
         WHERE f.instance_id = $1 AND f.check_id = $2 ORDER BY f.resource LIMIT 1",
    )
    .bind(instance)
    .bind(check)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Issue 17 (migration 20261208000010): a finding found again unchanged is not rewritten;
/// its last seen scan follows the instance's last succeeded scan, stops at the last scan
/// that evaluated its check when one cannot, and does not move with a failed scan.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn last_seen_follows_the_last_scan_that_found_each_finding(pool: PgPool) {
    let w = world(&pool).await;
    let scanner = w.scanner(&[]);
    let acme = w.onboard(&Onboard::new("acme"), RISKY_TOKEN).await;
    let handle = w.sim.scenario_handle();
    let activity_check = "data_exported";
    let inventory_check = "admin_personal_email_domain";
    assert_eq!(
        intercom_sspm::checks::meta(activity_check).map(|m| m.source),
        Some(intercom_sspm::checks::Source::Activity)
    );

    let first = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(first.status, ScanOutcome::Succeeded);
    let (scan, first_at, first_xmin) = seen(&pool, acme.id, inventory_check).await;
    assert_eq!(scan, Some(first.scan_id));
    let opened: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(at) FROM sspm.finding_events WHERE scan_id = $1")
            .bind(first.scan_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(first_at, opened, "last seen at the scan's time");
    assert_eq!(
        seen(&pool, acme.id, activity_check).await.0,
        Some(first.scan_id)
    );

    // Found again unchanged: the reader sees the new scan, the row is not rewritten.
    let second = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    let (scan, second_at, xmin) = seen(&pool, acme.id, inventory_check).await;
    assert_eq!(scan, Some(second.scan_id));
    assert!(second_at > first_at);
    assert_eq!(
        xmin, first_xmin,
        "a finding found again unchanged is not rewritten"
    );
    assert_eq!(
        seen(&pool, acme.id, activity_check).await.0,
        Some(second.scan_id)
    );
    // Teammates likewise (migration 20261208000020): listed again, not rewritten.
    type Teammate = (
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
        String,
    );
    let teammate = |admin: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, Teammate>(
                "SELECT a.last_seen_at, a.removed_at, r.xmin::text
                 FROM sspm.admins a JOIN sspm.admin_rows r USING (instance_id, admin_id)
                 WHERE a.instance_id = $1 AND a.admin_id = $2",
            )
            .bind(acme.id)
            .bind(admin)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (jane_seen, _, jane_xmin) = teammate("2").await;
    assert_eq!(jane_seen, second_at);

    // Bob leaves: his row stores the last scan that listed him.
    handle.remove_admin("acme", "4").unwrap();

    // The token loses the activity scope: activity checks are not evaluated, their
    // findings stay open and keep the last scan that found them.
    handle
        .set_scopes(RISKY_TOKEN, &["read_admins", "read_tags"])
        .unwrap();
    let third = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(third.status, ScanOutcome::Succeeded);
    let line = third
        .checks
        .iter()
        .find(|c| c.check_id == activity_check)
        .unwrap();
    assert_eq!(line.status, CheckStatus::NotEvaluated);
    let (scan, at, _) = seen(&pool, acme.id, activity_check).await;
    assert_eq!((scan, at), (Some(second.scan_id), second_at));
    let (scan, third_at, _) = seen(&pool, acme.id, inventory_check).await;
    assert_eq!(scan, Some(third.scan_id));
    assert!(third_at > second_at);
    let (bob_seen, bob_removed, _) = teammate("4").await;
    assert_eq!((bob_seen, bob_removed), (second_at, Some(third_at)));
    let (jane_seen, _, xmin) = teammate("2").await;
    assert_eq!((jane_seen, xmin), (third_at, jane_xmin));
    // ... and follows again once found again.
    handle
        .set_scopes(
            RISKY_TOKEN,
            &["read_admins", "read_admin_activity_logs", "read_tags"],
        )
        .unwrap();
    let fourth = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(
        seen(&pool, acme.id, activity_check).await.0,
        Some(fourth.scan_id)
    );

    // A failed scan finds nothing again.
    let faults = serde_json::from_value(json!({
        "endpoints": ["/admins"],
        "server_error": { "status": 503 }
    }))
    .unwrap();
    handle.set_token_faults(RISKY_TOKEN, faults).unwrap();
    let failed = scanner.scan(&acme, Trigger::Manual, None).await.unwrap();
    assert_eq!(failed.status, ScanOutcome::Failed);
    assert_eq!(
        seen(&pool, acme.id, inventory_check).await.0,
        Some(fourth.scan_id)
    );

    // Deleting the scan that last found them clears the reference, as it did per row.
    sqlx::query("DELETE FROM sspm.scans WHERE id = $1")
        .bind(fourth.scan_id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(seen(&pool, acme.id, inventory_check).await.0, None);
    assert_eq!(seen(&pool, acme.id, activity_check).await.0, None);
    w.sim.shutdown().await;
}

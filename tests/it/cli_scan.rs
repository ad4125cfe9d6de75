//! `scan`, `findings`, `checks` and `exception` through the real binary.

use serde_json::json;
use sqlx::PgPool;

use crate::support::cli::{run_cli, text};
use crate::support::{count, sim, World};

const TOKEN: &str = "tok_cli_scan_acme_9c1d";

async fn setup(pool: &PgPool) -> (intercom_sim::Simulator, Vec<(String, String)>) {
    let mut ws = sim::workspace_json(
        "acme",
        "us",
        TOKEN,
        &["read_admins", "read_admin_activity_logs"],
    );
    ws["identity_verification"] = json!(false);
    ws["admins"].as_array_mut().unwrap().push(json!({
        "id": "3", "name": "Gee", "email": "gee@gmail.com", "role": { "id": "r2", "name": "Agent" }
    }));
    ws["events"].as_array_mut().unwrap().push(json!({
        "id": "login-3", "activity_type": "admin_login_success", "ago": "1d", "performed_by": "3",
        "metadata": { "sign_in_method": "google" }
    }));
    let w = World::builder(pool).workspace(ws).build().await;
    let env = w.cli_env();
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-stdin",
        ],
        &env,
        Some(TOKEN),
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    (w.sim, env)
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn scan_prints_a_summary_and_findings_export_in_every_format(pool: PgPool) {
    let (sim, env) = setup(&pool).await;
    let next_before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT next_scan_at FROM sspm.instances")
            .fetch_one(&pool)
            .await
            .unwrap();
    let out = run_cli(&["scan", "acme"], &env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("succeeded") && stdout.contains("posture score"),
        "{stdout}"
    );
    assert!(stdout.contains("identity_verification_enabled"), "{stdout}");
    let (next_after, lease): (chrono::DateTime<chrono::Utc>, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT next_scan_at, lease_token FROM sspm.instances")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        next_after, next_before,
        "a manual scan leaves the schedule alone"
    );
    assert!(lease.is_none(), "the manual lease is released");

    let out = run_cli(&["findings", "--format", "json"], &env, None).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check_id"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"identity_verification_enabled")
            && checks.contains(&"admin_personal_email_domain"),
        "{checks:?}"
    );

    let out = run_cli(
        &["findings", "--format", "csv", "--severity", "high"],
        &env,
        None,
    )
    .await;
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("id,instance,region"));
    assert_eq!(lines.count(), 2, "two high findings: {csv}");

    let out = run_cli(
        &[
            "findings",
            "--format",
            "ocsf",
            "--check",
            "admin_personal_email_domain",
        ],
        &env,
        None,
    )
    .await;
    let event: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(event["class_uid"], 2004);
    assert_eq!(event["resources"][0]["uid"], "3");

    let out = run_cli(&["findings", "--check", "no_such_check"], &env, None).await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("unknown check"));

    let out = run_cli(&["checks", "--format", "json"], &env, None).await;
    let catalog: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        catalog.as_array().unwrap().len(),
        intercom_sspm::checks::catalog().len()
    );
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn scan_refuses_while_another_holder_scans_and_queue_wakes_daemons(pool: PgPool) {
    let (sim, env) = setup(&pool).await;
    sqlx::query("UPDATE sspm.instances SET lease_token = gen_random_uuid(), lease_owner = 'replica-7', lease_expires_at = now() + interval '5 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    let out = run_cli(&["scan", "acme"], &env, None).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("being scanned right now by replica-7"),
        "{stderr}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans").await,
        0,
        "nothing recorded"
    );

    sqlx::query("UPDATE sspm.instances SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, next_scan_at = now() + interval '6 hours'")
        .execute(&pool)
        .await
        .unwrap();
    let out = run_cli(&["scan", "acme", "--queue"], &env, None).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.instances WHERE next_scan_at <= now()"
        )
        .await,
        1
    );
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn failed_scan_exits_non_zero_and_exceptions_round_trip(pool: PgPool) {
    let (sim, env) = setup(&pool).await;
    assert!(run_cli(&["scan", "acme"], &env, None)
        .await
        .status
        .success());

    let out = run_cli(
        &[
            "exception",
            "add",
            "--instance",
            "acme",
            "--check",
            "admin_personal_email_domain",
            "--reason",
            "founder's account",
            "--expires",
            "2099-01-01",
        ],
        &env,
        None,
    )
    .await;
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 finding(s) muted"), "{stdout}");
    let out = run_cli(&["exception", "list", "--format", "json"], &env, None).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["muted_findings"], 1);
    let out = run_cli(&["exception", "remove", &id], &env, None).await;
    assert!(text(&out).0.contains("1 finding(s) reopened"));

    let open_before = count(
        &pool,
        "SELECT count(*) FROM sspm.findings WHERE status = 'open'",
    )
    .await;
    sim.scenario_handle().revoke_token(TOKEN).unwrap();
    let out = run_cli(&["scan", "acme"], &env, None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("scan of acme failed") && stderr.contains("401"),
        "{stderr}"
    );
    assert!(stdout.contains("instance status unauthorized"), "{stdout}");

    // Recovery: the operator regenerates the token in Intercom and replaces it here.
    const NEW_TOKEN: &str = "tok_cli_scan_acme_regenerated_77";
    sim.scenario_handle()
        .update_workspace("acme", |w| {
            let mut fresh = w.tokens[0].clone();
            fresh.token = NEW_TOKEN.into();
            fresh.revoked = false;
            w.tokens.push(fresh);
        })
        .unwrap();
    let out = run_cli(
        &["instance", "set-token", "acme", "--token-stdin"],
        &env,
        Some(NEW_TOKEN),
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = run_cli(&["scan", "acme"], &env, None).await;
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("instance status ok"), "{stdout}");
    let open_after = count(
        &pool,
        "SELECT count(*) FROM sspm.findings WHERE status = 'open'",
    )
    .await;
    assert_eq!(
        open_after, open_before,
        "findings survived the revoked token and its failed scan"
    );
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn attested_manual_control_passes_until_it_expires(pool: PgPool) {
    let (sim, env) = setup(&pool).await;
    let status_of = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT r.status FROM sspm.check_results r JOIN sspm.scans s ON s.id = r.scan_id
             WHERE r.check_id = 'manual_2fa_enforced' ORDER BY s.started_at DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert!(run_cli(&["scan", "acme"], &env, None)
        .await
        .status
        .success());
    assert_eq!(status_of(pool.clone()).await, "not_evaluated");

    for (args, expect) in [
        (
            vec![
                "--control",
                "identity_verification_enabled",
                "--evidence",
                "x",
            ],
            "not a manual control",
        ),
        (
            vec!["--control", "manual_2fa_enforced", "--evidence", "  "],
            "--evidence",
        ),
        (
            vec![
                "--control",
                "manual_2fa_enforced",
                "--evidence",
                "x",
                "--expires",
                "2001-01-01",
            ],
            "in the past",
        ),
    ] {
        let mut full = vec!["attest", "add", "--instance", "acme"];
        full.extend(args);
        let out = run_cli(&full, &env, None).await;
        assert!(!out.status.success(), "{full:?}");
        assert!(text(&out).1.contains(expect), "{full:?}: {:?}", text(&out));
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.attestations").await,
        0
    );

    let out = run_cli(
        &[
            "attest",
            "add",
            "--instance",
            "acme",
            "--control",
            "manual_2fa_enforced",
            "--evidence",
            "SEC-42: screenshot of Security settings",
        ],
        &env,
        None,
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(run_cli(&["scan", "acme"], &env, None)
        .await
        .status
        .success());
    assert_eq!(status_of(pool.clone()).await, "pass");
    let out = run_cli(&["attest", "list", "--format", "json"], &env, None).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["control_id"], "manual_2fa_enforced");

    sqlx::query("UPDATE sspm.attestations SET expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(run_cli(&["scan", "acme"], &env, None)
        .await
        .status
        .success());
    assert_eq!(
        status_of(pool.clone()).await,
        "not_evaluated",
        "an expired attestation no longer counts"
    );
    sim.shutdown().await;
}

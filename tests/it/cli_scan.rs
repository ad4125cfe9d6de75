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

/// Runs `args` and expects failure with each of `expect` in stderr; returns the exit code.
async fn refused(args: &[&str], env: &[(String, String)], expect: &[&str]) -> Option<i32> {
    let out = run_cli(args, env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{args:?} should fail: {stdout}");
    for e in expect {
        assert!(stderr.contains(e), "{args:?}: expected {e:?} in: {stderr}");
    }
    out.status.code()
}

/// Runs `args` and expects success; returns stdout.
async fn accepted(args: &[&str], env: &[(String, String)]) -> String {
    let out = run_cli(args, env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    stdout
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn json_rows(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(stdout).expect("a JSON list")
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn exception_add_needs_an_expiry_a_real_resource_and_no_twin(pool: PgPool) {
    let (sim, mut env) = setup(&pool).await;
    accepted(&["scan", "acme"], &env).await;
    let resource: String = sqlx::query_scalar(
        "SELECT resource FROM sspm.findings WHERE check_id = 'admin_personal_email_domain'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let base = [
        "exception",
        "add",
        "--instance",
        "acme",
        "--check",
        "admin_personal_email_domain",
        "--reason",
        "founder's account",
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };

    // No expiry and no --permanent: refused, naming both flags.
    refused(&args(&with(&[])), &env, &["--expires", "--permanent"]).await;
    let both = with(&["--expires", "30d", "--permanent"]);
    assert_eq!(
        refused(&args(&both), &env, &["--permanent"]).await,
        Some(2),
        "both flags at once is a usage error"
    );
    // A resource no finding has (a typo) mutes nothing: refused unless --force.
    refused(
        &args(&with(&["--resource", "admin:999", "--expires", "30d"])),
        &env,
        &["admin:999", "--force", "findings --instance"],
    )
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.exceptions").await,
        0
    );

    // A relative expiry counts from now; the author is $USER when --author is absent.
    env.push(("USER".into(), "ops-carol".into()));
    let mut one = with(&["--expires", "30d", "--resource"]);
    one.push(resource.clone());
    let out = accepted(&args(&one), &env).await;
    assert!(out.contains("1 finding(s) muted"), "{out}");
    let rows = json_rows(&accepted(&["exception", "list", "--format", "json"], &env).await);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["author"], "ops-carol");
    let first_id = rows[0]["id"].as_str().unwrap().to_string();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rows[0]["expires_at"].clone()).unwrap();
    let off = expires - (chrono::Utc::now() + chrono::Duration::days(30));
    assert!(off.num_seconds().abs() < 120, "30d from now, got {expires}");

    // The same scope again is refused, naming the exception already in force.
    refused(&args(&one), &env, &["already covers", &first_id]).await;
    // A wider one (every resource of the check) may be added, permanently; after it, a
    // single resource of that check is covered already.
    let all = accepted(&args(&with(&["--permanent"])), &env).await;
    assert!(all.contains("permanently"), "{all}");
    let rows = json_rows(&accepted(&["exception", "list", "--format", "json"], &env).await);
    let wide_id = rows.iter().find(|r| r["resource"].is_null()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rows
        .iter()
        .any(|r| r["resource"].is_null() && r["expires_at"].is_null()));
    refused(
        &args(&with(&["--permanent"])),
        &env,
        &["already covers", &wide_id],
    )
    .await;
    // Once the first one has expired, its scope is free again.
    sqlx::query(
        "UPDATE sspm.exceptions SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(&first_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM sspm.exceptions WHERE resource IS NULL")
        .execute(&pool)
        .await
        .unwrap();
    accepted(&args(&one), &env).await;

    // --force takes a resource no finding has yet; a blank --author is refused, and an
    // empty $USER falls back to "cli".
    let forced = with(&["--resource", "admin:999", "--expires", "2w", "--force"]);
    refused(
        &args(&[forced.clone(), vec!["--author".into(), " ".into()]].concat()),
        &env,
        &["--author"],
    )
    .await;
    env.retain(|(k, _)| k != "USER");
    env.push(("USER".into(), String::new()));
    accepted(&args(&forced), &env).await;
    let author: String =
        sqlx::query_scalar("SELECT author FROM sspm.exceptions WHERE resource = 'admin:999'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(author, "cli");
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn exception_ids_are_taken_by_unique_prefix(pool: PgPool) {
    let (sim, env) = setup(&pool).await;
    let first = "abcd0000-1000-4000-8000-000000000000";
    let second = "abcd0000-2000-4000-8000-000000000000";
    for id in [first, second] {
        sqlx::query(
            "INSERT INTO sspm.exceptions (id, instance_id, check_id, reason, author)
             SELECT $1::uuid, id, 'data_exported', 'test', 'test' FROM sspm.instances",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    }
    // The table's id column tells the rows apart in as few characters as it can (8 or
    // more); --wide shows whole ids.
    let table = accepted(&["exception", "list"], &env).await;
    assert!(
        table.contains("abcd00001 ") && table.contains("abcd00002 ") && !table.contains(first),
        "{table}"
    );
    let wide = accepted(&["--wide", "exception", "list"], &env).await;
    assert!(wide.contains(first), "{wide}");
    // Ambiguous: refused, listing the candidates; unknown: "not found" (exit 3); too
    // short or not hex: a usage error (exit 2).
    refused(
        &["exception", "remove", "abcd"],
        &env,
        &[
            "more than one exception",
            first,
            second,
            "acme / data_exported",
        ],
    )
    .await;
    assert_eq!(
        refused(&["exception", "remove", "ffff"], &env, &["exception list"]).await,
        Some(3)
    );
    assert_eq!(
        refused(&["exception", "remove", "ab"], &env, &["4 or more"]).await,
        Some(2)
    );
    // A unique prefix works, hyphens and case as the operator types them.
    let out = accepted(&["exception", "remove", "ABCD0000-2"], &env).await;
    assert!(out.contains(second) && out.contains("removed"), "{out}");
    let out = accepted(&["exception", "remove", "abcd"], &env).await;
    assert!(out.contains(first), "now unique: {out}");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.exceptions").await,
        0
    );
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn attestations_are_listed_with_ids_removed_and_not_doubled(pool: PgPool) {
    let (sim, env) = setup(&pool).await;
    let add = [
        "attest",
        "add",
        "--instance",
        "acme",
        "--control",
        "manual_2fa_enforced",
        "--evidence",
        "SEC-42",
        "--expires",
        "12h",
    ];
    accepted(&add, &env).await;
    let rows = json_rows(&accepted(&["attest", "list", "--format", "json"], &env).await);
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rows[0]["expires_at"].clone()).unwrap();
    let off = expires - (chrono::Utc::now() + chrono::Duration::hours(12));
    assert!(off.num_seconds().abs() < 120, "12h from now, got {expires}");
    // The table has an id column: the short id that `attest remove` takes.
    let short = id.replace('-', "")[..8].to_string();
    let table = accepted(&["attest", "list"], &env).await;
    assert!(
        table.lines().nth(1).is_some_and(|h| h.contains(" id ")) && table.contains(&short),
        "{table}"
    );
    // The same control attested again while the first counts: refused, naming it.
    refused(&add, &env, &["already attested", &id, "attest remove"]).await;

    let out = accepted(&["attest", "remove", &short], &env).await;
    assert!(out.contains(&id) && out.contains("not_evaluated"), "{out}");
    let (action, target): (String, String) =
        sqlx::query_as("SELECT action, target FROM sspm.audit_log ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (action.as_str(), target.as_str()),
        ("attest.remove", "acme")
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.attestations").await,
        0
    );
    assert_eq!(
        refused(&["attest", "remove", &short], &env, &["attest list"]).await,
        Some(3)
    );
    // Removed, the control may be attested anew.
    accepted(&add, &env).await;
    sim.shutdown().await;
}

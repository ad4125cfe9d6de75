//! Bad operator input through the real binary. Each case: non-zero exit, a message that says
//! what is wrong and what to do, no panic, and no row written or changed.
//! (Onboarding input — unknown region, malformed cron, unknown time zone, empty token,
//! duplicate names — is covered in onboarding.rs.)

use std::time::Duration;

use intercom_sspm::db::instances::Instance;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::cli::{run_cli, text};
use crate::support::{cli, count, db, sim, Onboard, TestKey};

const TOKEN: &str = "tok_badinput_acme_0f1e2d3c4b5a";

/// Instance "acme" (US, every 6h) with TOKEN sealed under `key`.
async fn onboard(pool: &PgPool, key: &TestKey) -> Instance {
    let acme = Onboard::new("acme").schedule("6h");
    db::onboard(pool, &key.ring(), &acme, TOKEN).await
}

/// Runs a command that must fail with `expect` in its message; returns stderr.
async fn fails(
    args: &[&str],
    env: &[(String, String)],
    stdin: Option<&str>,
    expect: &[&str],
) -> String {
    let out = run_cli(args, env, stdin).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{args:?} should fail: {stdout}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for e in expect {
        assert!(stderr.contains(e), "{args:?}: expected {e:?} in: {stderr}");
    }
    stderr
}

/// Everything an operator command could write, as one comparable snapshot.
async fn snapshot(pool: &PgPool) -> String {
    db::all_table_text(pool).await
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn set_schedule_rejects_bad_schedules_and_changes_nothing(pool: PgPool) {
    let key = TestKey::generate();
    onboard(&pool, &key).await;
    let env = cli::env(&pool, None, &key.b64);
    let before = snapshot(&pool).await;
    let cases: &[(&[&str], &[&str])] = &[
        (&["every tuesday"], &["neither an interval", "cron"]),
        (&["61 * * * *"], &["61 * * * *"]),
        (
            &["0 3 * * *", "--timezone", "Mars/Base"],
            &["unknown time zone", "Europe/Berlin"],
        ),
        (
            &["CRON_TZ=Atlantis/Capital 0 3 * * *"],
            &["unknown time zone"],
        ),
        (
            &[
                "CRON_TZ=Europe/Berlin 0 3 * * *",
                "--timezone",
                "Europe/Paris",
            ],
            &["not both"],
        ),
        (
            &["6h", "--timezone", "Europe/Berlin"],
            &["--timezone applies to cron"],
        ),
        (&["   "], &["empty"]),
        (&["10s"], &["shorter than the minimum"]),
        (
            &["default", "--timezone", "UTC"],
            &["--timezone cannot be combined"],
        ),
        // Far beyond any date chrono can represent: an error, not an overflow panic.
        (
            &["300000y"],
            &["longer than the maximum", "instance disable"],
        ),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["instance", "set-schedule", "acme"];
        args.extend_from_slice(extra);
        fails(&args, &env, None, expect).await;
    }
    fails(
        &["instance", "set-schedule", "nope", "6h"],
        &env,
        None,
        &["no instance named", "instance list"],
    )
    .await;
    assert_eq!(snapshot(&pool).await, before, "nothing changed");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn exception_add_rejects_bad_input_and_writes_nothing(pool: PgPool) {
    let key = TestKey::generate();
    onboard(&pool, &key).await;
    let env = cli::env(&pool, None, &key.b64);
    let before = snapshot(&pool).await;
    let base = ["exception", "add", "--instance", "acme"];
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--check", "no_such_check", "--reason", "r"],
            &["unknown check", "intercom-sspm checks"],
        ),
        (
            &[
                "--check",
                "token_least_privilege",
                "--reason",
                "r",
                "--expires",
                "2001-01-01",
            ],
            &["--expires is in the past"],
        ),
        (
            &[
                "--check",
                "token_least_privilege",
                "--reason",
                "r",
                "--expires",
                "next week",
            ],
            &["--expires", "YYYY-MM-DD"],
        ),
        (
            &[
                "--check",
                "token_least_privilege",
                "--reason",
                "r",
                "--expires",
                "2030-02-30",
            ],
            &["--expires", "YYYY-MM-DD"],
        ),
        (
            &["--check", "token_least_privilege", "--reason", "  "],
            &["--reason must say why"],
        ),
        (&["--check", "token_least_privilege"], &["--reason"]),
    ];
    for (extra, expect) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        fails(&args, &env, None, expect).await;
    }
    fails(
        &[
            "exception",
            "add",
            "--instance",
            "nope",
            "--check",
            "token_least_privilege",
            "--reason",
            "r",
            "--permanent",
        ],
        &env,
        None,
        &["no instance named"],
    )
    .await;
    fails(
        &["exception", "remove", "not-a-uuid"],
        &env,
        None,
        &["invalid value"],
    )
    .await;
    fails(
        &["exception", "remove", &Uuid::new_v4().to_string()],
        &env,
        None,
        &["no exception with an id starting", "exception list"],
    )
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.exceptions").await,
        0
    );
    assert_eq!(snapshot(&pool).await, before);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn findings_and_scan_reject_unknown_values(pool: PgPool) {
    let key = TestKey::generate();
    onboard(&pool, &key).await;
    let env = cli::env(&pool, None, &key.b64);
    let before = snapshot(&pool).await;
    fails(
        &["findings", "--severity", "bogus"],
        &env,
        None,
        &[
            "unknown severity \"bogus\"",
            "critical, high, medium, low, info",
        ],
    )
    .await;
    // clap's own errors list the accepted values.
    fails(
        &["findings", "--status", "bogus"],
        &env,
        None,
        &["open", "resolved", "muted", "all"],
    )
    .await;
    fails(
        &["findings", "--format", "xml"],
        &env,
        None,
        &["table", "json", "csv", "ocsf"],
    )
    .await;
    fails(
        &["findings", "--check", "bogus"],
        &env,
        None,
        &["unknown check", "intercom-sspm checks"],
    )
    .await;
    fails(
        &["findings", "--instance", "nope"],
        &env,
        None,
        &["no instance named"],
    )
    .await;
    fails(
        &["scan", "nope"],
        &env,
        None,
        &["no instance named or with id \"nope\"", "instance list"],
    )
    .await;
    fails(
        &["scan", &Uuid::new_v4().to_string()],
        &env,
        None,
        &["no instance named"],
    )
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans").await,
        0,
        "no scan row"
    );
    assert_eq!(snapshot(&pool).await, before);
}

/// Issue 15 item 5: a sealed token and no key configured is refused before the scan starts,
/// like a malformed key: no scan row, the instance's status untouched (it used to record a
/// failed scan and set the instance to `error`).
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn scan_without_a_token_key_fails_before_writing_anything(pool: PgPool) {
    let key = TestKey::generate();
    onboard(&pool, &key).await;
    let with_key = cli::env(&pool, None, &key.b64);
    let without_key: Vec<(String, String)> = with_key
        .iter()
        .filter(|(k, _)| k != "SSPM__SECURITY__TOKEN_KEY")
        .cloned()
        .collect();
    let malformed: Vec<(String, String)> = without_key
        .iter()
        .cloned()
        .chain([("SSPM__SECURITY__TOKEN_KEY".into(), "not-base64!".into())])
        .collect();
    let before = snapshot(&pool).await;
    for args in [&["scan", "acme"][..], &["scan", "--all"]] {
        let stderr = fails(
            args,
            &without_key,
            None,
            &[
                "cannot scan acme",
                &format!("sealed under token key {}", key.id),
                "SSPM__SECURITY__TOKEN_KEY",
                "Nothing was scanned or recorded",
            ],
        )
        .await;
        assert!(!stderr.contains(&key.b64), "{stderr}");
        fails(args, &malformed, None, &["security.token_key", "base64"]).await;
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans").await,
        0,
        "no scan row"
    );
    assert_eq!(
        snapshot(&pool).await,
        before,
        "status, schedule and lease unchanged"
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn set_token_rejects_blank_or_broken_tokens_and_keeps_the_old_one(pool: PgPool) {
    let key = TestKey::generate();
    onboard(&pool, &key).await;
    let env = cli::env(&pool, None, &key.b64);
    let before = snapshot(&pool).await;
    let args = ["instance", "set-token", "acme", "--token-stdin"];
    fails(
        &args,
        &env,
        Some(" \t \n"),
        &["token is empty", "Developer Hub"],
    )
    .await;
    fails(
        &args,
        &env,
        Some("tok with spaces"),
        &["whitespace", "copy it again"],
    )
    .await;
    fails(&args, &env, Some("tok\u{7}bell"), &["control characters"]).await;
    fails(
        &args,
        &env,
        Some(&"x".repeat(10_000)),
        &["implausibly long"],
    )
    .await;
    fails(
        &[
            "instance",
            "set-token",
            "acme",
            "--token-ref",
            "vault:secret/acme",
        ],
        &env,
        None,
        &["file:/absolute/path or env:VARIABLE_NAME"],
    )
    .await;
    fails(
        &["instance", "set-token", "acme"],
        &env,
        None,
        &["--token-stdin", "--token-ref"],
    )
    .await;
    assert_eq!(
        snapshot(&pool).await,
        before,
        "the sealed token is unchanged"
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn unknown_config_keys_are_named(pool: PgPool) {
    let key = TestKey::generate();
    let env = cli::env(&pool, None, &key.b64);
    let dir = tempfile::tempdir().unwrap();
    for (contents, expect) in [
        (
            "[scheduler]\npoll_intervall = \"5s\"\n",
            ["poll_intervall", "scheduler"],
        ),
        (
            "[schedulr]\npoll_interval = \"5s\"\n",
            ["schedulr", "did you mean `scheduler`"],
        ),
        (
            "[intercom.base_url]\nca = \"https://x\"\n",
            ["ca", "intercom.base_url"],
        ),
    ] {
        let path = dir.path().join("sspm.toml");
        std::fs::write(&path, contents).unwrap();
        fails(
            &["--config", path.to_str().unwrap(), "instance", "list"],
            &env,
            None,
            &["invalid configuration", expect[0], expect[1]],
        )
        .await;
    }
    let mut typo = env.clone();
    typo.push(("SSPM__SCHEDULER__POLL_INTERVALL".into(), "5s".into()));
    fails(
        &["instance", "list"],
        &typo,
        None,
        &["poll_intervall", "scheduler"],
    )
    .await;
    fails(
        &["--config", "/nonexistent/sspm.toml", "instance", "list"],
        &env,
        None,
        &["/nonexistent/sspm.toml", "does not exist"],
    )
    .await;
    // Nothing was written.
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn removing_an_instance_mid_scan_ends_the_scan_cleanly(pool: PgPool) {
    // /admins answers slowly, so the scan is in flight (its scan row `running`) when the
    // operator removes the instance.
    let mut w = sim::workspace_json("acme", "us", TOKEN, &["read_admins"]);
    w["faults"] = json!({ "endpoints": ["/admins"], "latency_ms": 1500 });
    let sim = sim::start_json(json!({ "workspaces": [w] })).await;
    let key = TestKey::generate();
    onboard(&pool, &key).await;
    let env = cli::env(&pool, Some(&sim), &key.b64);

    let scan = tokio::spawn({
        let env = env.clone();
        async move { run_cli(&["scan", "acme"], &env, None).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
    )
    .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scan never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = run_cli(&["instance", "remove", "acme", "--yes"], &env, None).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = scan.await.unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("no longer exists (removed while scanning)"),
        "an InstanceGone outcome, not a database error: {stderr}"
    );
    assert!(
        !stderr.contains("foreign key") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // No half-written rows: nothing of the instance survives, nothing was re-created.
    for table in [
        "instances",
        "scans",
        "check_results",
        "findings",
        "finding_events",
        "admins",
    ] {
        assert_eq!(
            count(&pool, &format!("SELECT count(*) FROM sspm.{table}")).await,
            0,
            "{table}"
        );
    }
    sim.shutdown().await;
}

/// Database settings that cannot work say what is wrong and where, never the password.
#[tokio::test]
async fn unusable_database_settings_are_clear_errors() {
    let cases = [
        (None, "DATABASE_URL"),
        (Some("mysql://u:pw@127.0.0.1/x"), "must be a Postgres URL"),
        (
            Some("postgres://u:hunter2secret@127.0.0.1:1/sspm"),
            "127.0.0.1:1",
        ),
    ];
    for (url, expect) in cases {
        let mut env = crate::support::sim::sim_env(None);
        if let Some(url) = url {
            env.push(("DATABASE_URL".into(), url.into()));
        }
        let out = crate::support::cli::run_cli(&["instance", "list"], &env, None).await;
        let (_, stderr) = crate::support::cli::text(&out);
        assert!(!out.status.success(), "{url:?}");
        assert!(stderr.contains(expect), "{url:?}: {stderr}");
        assert!(
            !stderr.contains("hunter2secret") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

//! `user ...` and `audit list` through the real binary, and the audit rows the CLI's
//! write commands leave in the same transaction as their change.

use sqlx::PgPool;

use crate::support::cli::{run_cli, text};
use crate::support::db::count;

const TOKEN: &str = "tok_audit_acme_5e2f";
const PASSWORD: &str = "a long enough password";

fn env(pool: &PgPool) -> Vec<(String, String)> {
    vec![
        (
            "DATABASE_URL".into(),
            crate::support::db::database_url(pool),
        ),
        ("USER".into(), "ops-alice".into()),
    ]
}

async fn ok(args: &[&str], env: &[(String, String)], stdin: Option<&str>) -> String {
    let out = run_cli(args, env, stdin).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    stdout
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn users_are_managed_with_argon2id_hashes_and_audited(pool: PgPool) {
    let env = env(&pool);
    let out = ok(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "operator",
            "--password-stdin",
        ],
        &env,
        Some(&format!("{PASSWORD}\n")),
    )
    .await;
    assert!(out.contains("alice") && out.contains("operator"), "{out}");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM sspm.console_users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The trailing newline was the shell's: the stored hash verifies the password without it.
    assert!(intercom_sspm::console::users::verify_password(
        PASSWORD, &hash
    ));

    // Too short, duplicate, no stdin on a non-terminal: clear errors, nothing stored.
    let short = run_cli(
        &["user", "add", "bob", "--role", "viewer", "--password-stdin"],
        &env,
        Some("short"),
    )
    .await;
    assert!(!short.status.success());
    assert!(text(&short).1.contains("at least 12"), "{:?}", text(&short));
    let dup = run_cli(
        &[
            "user",
            "add",
            "ALICE",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        &env,
        Some(PASSWORD),
    )
    .await;
    assert!(text(&dup).1.contains("already exists"), "{:?}", text(&dup));
    let no_pw = run_cli(&["user", "add", "carol", "--role", "viewer"], &env, None).await;
    assert!(
        text(&no_pw).1.contains("--password-stdin"),
        "{:?}",
        text(&no_pw)
    );
    let bad_role = run_cli(
        &["user", "add", "dave", "--role", "root", "--password-stdin"],
        &env,
        Some(PASSWORD),
    )
    .await;
    assert!(!bad_role.status.success());
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.console_users").await,
        1
    );

    ok(&["user", "set-role", "alice", "admin"], &env, None).await;
    ok(
        &["user", "set-password", "alice", "--password-stdin"],
        &env,
        Some("another long password"),
    )
    .await;
    ok(&["user", "disable", "alice"], &env, None).await;
    let list = ok(&["user", "list", "--format", "json"], &env, None).await;
    let users: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(users[0]["role"], "admin");
    assert_eq!(users[0]["disabled"], true);
    assert!(
        !list.contains("argon2"),
        "user list never shows hashes: {list}"
    );
    ok(&["user", "remove", "alice"], &env, None).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.console_users").await,
        0
    );

    let audit = ok(&["audit", "list", "--format", "json"], &env, None).await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "user.remove",
            "user.disable",
            "user.set_password",
            "user.set_role",
            "user.add"
        ]
    );
    assert!(rows
        .iter()
        .all(|r| r["actor"] == "ops-alice" && r["via"] == "cli" && r["target"] == "alice"));
    assert!(!audit.contains(PASSWORD) && !audit.contains("another long password"));
    assert!(!audit.contains("argon2"));
    // Paging: --before takes the id of the last row seen.
    let last_id = rows[1]["id"].as_i64().unwrap();
    let page = ok(
        &[
            "audit",
            "list",
            "--format",
            "json",
            "--limit",
            "2",
            "--before",
            &last_id.to_string(),
        ],
        &env,
        None,
    )
    .await;
    let page: Vec<serde_json::Value> = serde_json::from_str(&page).unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["action"], "user.set_password");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn every_cli_write_command_leaves_one_audit_row_without_secrets(pool: PgPool) {
    let sim = crate::support::sim::start_json(serde_json::json!({
        "workspaces": [crate::support::sim::workspace_json("acme", "us", TOKEN, &["read_admins"])]
    }))
    .await;
    let key = crate::support::TestKey::generate().b64;
    let mut env = crate::support::sim::sim_env(Some(&sim));
    env.extend(self::env(&pool));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key.clone()));
    let steps: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec![
                "instance",
                "add",
                "--name",
                "acme",
                "--region",
                "us",
                "--token-stdin",
            ],
            Some(TOKEN),
            "instance.add",
        ),
        (
            vec!["instance", "disable", "acme"],
            None,
            "instance.disable",
        ),
        (vec!["instance", "enable", "acme"], None, "instance.enable"),
        (
            vec!["instance", "set-schedule", "acme", "2h"],
            None,
            "instance.set_schedule",
        ),
        (
            vec!["instance", "set-domains", "acme", "acme.com"],
            None,
            "instance.set_domains",
        ),
        (
            vec!["instance", "set-token", "acme", "--token-stdin"],
            Some(TOKEN),
            "instance.set_token",
        ),
        (vec!["scan", "acme", "--queue"], None, "instance.scan_now"),
        (
            vec![
                "exception",
                "add",
                "--instance",
                "acme",
                "--check",
                "admin_personal_email_domain",
                "--reason",
                "contractors",
                "--permanent",
            ],
            None,
            "exception.add",
        ),
        (
            vec![
                "attest",
                "add",
                "--instance",
                "acme",
                "--control",
                "manual_2fa_enforced",
                "--evidence",
                "screenshot in ticket SEC-1",
            ],
            None,
            "attest.add",
        ),
    ];
    for (args, stdin, action) in &steps {
        let before = count(&pool, "SELECT count(*) FROM sspm.audit_log").await;
        ok(args, &env, *stdin).await;
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT action, target, actor FROM sspm.audit_log ORDER BY id DESC LIMIT 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            count(&pool, "SELECT count(*) FROM sspm.audit_log").await,
            before + 1,
            "{args:?} leaves exactly one audit row"
        );
        assert_eq!(
            rows[0],
            (action.to_string(), "acme".into(), "ops-alice".into())
        );
    }
    let exception_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM sspm.exceptions")
        .fetch_one(&pool)
        .await
        .unwrap();
    let before = count(&pool, "SELECT count(*) FROM sspm.audit_log").await;
    ok(
        &["exception", "remove", &exception_id.to_string()],
        &env,
        None,
    )
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.audit_log").await,
        before + 1,
        "exception remove leaves exactly one audit row"
    );
    ok(&["instance", "remove", "acme", "--yes"], &env, None).await;
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM sspm.audit_log ORDER BY id DESC LIMIT 2")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(actions, ["instance.remove", "exception.remove"]);
    // The trail outlives the instance and never holds the token or the key.
    let trail = crate::support::db::all_table_text(&pool).await;
    assert!(!trail.contains(TOKEN) && !trail.contains(&key));
    // A refused command (unknown instance) leaves no row.
    let before = count(&pool, "SELECT count(*) FROM sspm.audit_log").await;
    let out = run_cli(&["instance", "disable", "nope"], &env, None).await;
    assert!(!out.status.success());
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.audit_log").await,
        before
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn audit_rows_roll_back_with_the_change(pool: PgPool) {
    use intercom_sspm::audit::{self, Actor};
    let mut tx = pool.begin().await.unwrap();
    audit::record(
        &mut tx,
        &Actor::console("bob"),
        "instance.remove",
        "x",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    drop(tx);
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);
    let privileged: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('sspm_reader', 'sspm.audit_log', 'SELECT')
            AND NOT has_table_privilege('sspm_reader', 'sspm.console_users', 'SELECT')
            AND NOT has_table_privilege('sspm_reader', 'sspm.console_sessions', 'SELECT')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        privileged,
        "readers see the trail but not users or sessions"
    );
}

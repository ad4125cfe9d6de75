//! Channel secrets never leak: not in CLI output, not in trace-level daemon logs while
//! sends fail, not in error messages or `alerts list`, not in a pg_dump of the database,
//! and the reader role cannot select the columns that hold them.

use std::time::Duration;

use sqlx::PgPool;

use crate::support::alerts::{AlertWorld, Receiver, Reply};

const SLACK_TOKEN: &str = "SLACKPATHSECRET0x7f3a9";
const ROUTING_KEY: &str = "PDROUTINGSECRET0x51c2e";
const SMTP_PASSWORD: &str = "SMTPPASSWORDSECRET0x9d";

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "{what} contains a channel secret ({s}):\n{text}"
        );
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn channel_secrets_stay_out_of_output_logs_errors_and_dumps(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![]).await;
    let recv = Receiver::start().await;
    // Everything fails, so every error path runs.
    recv.script(&[Reply::Status(500); 50]);
    let slack_url = recv.url(&format!("/services/T0/B0/{SLACK_TOKEN}"));
    let whsec = w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    w.cli(
        &[
            "channel", "add", "--name", "chat", "--kind", "slack", "--url", &slack_url,
        ],
        None,
    )
    .await;
    let smtp_url = format!(
        "smtp://alerts:{SMTP_PASSWORD}@127.0.0.1:{}?tls=none",
        crate::support::free_port()
    );
    w.cli(
        &[
            "channel",
            "add",
            "--name",
            "mail",
            "--kind",
            "email",
            "--smtp-url",
            &smtp_url,
            "--from",
            "sspm@example.com",
            "--to",
            "secops@example.com",
        ],
        None,
    )
    .await;
    w.cli(
        &[
            "channel",
            "add",
            "--name",
            "oncall",
            "--kind",
            "pagerduty",
            "--routing-key-stdin",
        ],
        Some(ROUTING_KEY),
    )
    .await;
    let secrets = [SLACK_TOKEN, ROUTING_KEY, SMTP_PASSWORD, whsec.as_str()];

    for args in [
        vec!["channel", "list"],
        vec!["channel", "list", "--format", "json"],
        vec!["channel", "show", "chat"],
        vec!["channel", "show", "chat", "--format", "json"],
        vec!["channel", "show", "mail", "--format", "json"],
        vec!["channel", "show", "oncall"],
        vec!["channel", "show", "siem", "--format", "json"],
    ] {
        let out = w.cli(&args, None).await;
        assert_clean(&format!("{args:?}"), &out, &secrets);
    }
    let shown = w.cli(&["channel", "show", "chat"], None).await;
    assert!(
        shown.contains("sealed") && shown.contains("********"),
        "{shown}"
    );

    // `channel test` against failing receivers: non-zero, and the error names no secret.
    for name in ["chat", "mail", "oncall", "siem"] {
        let pd = recv.url("/pd");
        let out = crate::support::cli::run_cli(
            &["channel", "test", name],
            &w.env(&[
                ("SSPM__NOTIFY__PAGERDUTY_URL", &pd),
                ("SSPM__LOG__LEVEL", "trace"),
            ]),
            None,
        )
        .await;
        let (stdout, stderr) = crate::support::cli::text(&out);
        assert!(
            !out.status.success(),
            "{name}: a refused test message exits non-zero"
        );
        assert!(stderr.contains("not accepted"), "{stderr}");
        assert_clean(
            &format!("channel test {name}"),
            &format!("{stdout}{stderr}"),
            &secrets,
        );
    }

    // A daemon at trace level failing to deliver to every channel.
    let instance = w.onboard("acme", "tok_unused_0000000001").await;
    sqlx::query(
        "INSERT INTO sspm.notification_outbox (channel_id, instance_id, kind, event)
         SELECT id, $1, 'scan', $2 FROM sspm.notification_channels",
    )
    .bind(instance)
    .bind(serde_json::json!({
        "schema": "intercom-sspm/alert", "version": 1, "type": "scan", "at": chrono::Utc::now(),
        "instance": { "id": instance, "name": "acme", "region": "us", "workspace_id": null },
        "scan_id": null, "health": { "from": "ok", "to": "unauthorized", "detail": null },
        "findings": [], "omitted": 0
    }))
    .execute(&pool)
    .await
    .unwrap();
    let pd = recv.url("/pd");
    let mut d = w.daemon(
        "r1",
        &[
            ("SSPM__LOG__LEVEL", "trace"),
            ("SSPM__NOTIFY__PAGERDUTY_URL", &pd),
            // Scans of the dummy instance would only add noise.
            ("SSPM__SCHEDULER__MAX_CONCURRENT_SCANS", "1"),
        ],
    );
    d.wait_ready(Duration::from_secs(30)).await;
    crate::support::db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE attempts >= 2",
        4,
        Duration::from_secs(30),
    )
    .await;
    d.signal("TERM");
    let _ = d.wait_exit(Duration::from_secs(20)).await;
    let logs = d.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("trace"),
        "trace logging was on"
    );
    assert_clean("daemon trace logs", &logs, &secrets);

    for args in [
        vec!["alerts", "list", "--wide"],
        vec!["alerts", "list", "--format", "json"],
    ] {
        let out = w.cli(&args, None).await;
        assert!(out.contains("HTTP 500") || out.contains("connect"), "{out}");
        assert_clean(&format!("{args:?}"), &out, &secrets);
    }

    // Not in any table (sealed), nor in a pg_dump of the whole database.
    assert_clean(
        "table contents",
        &crate::support::db::all_table_text(&pool).await,
        &secrets,
    );
    let dump = std::process::Command::new("pg_dump")
        .arg(crate::support::db::database_url(&pool))
        .output()
        .expect("pg_dump is installed");
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("notification_channels"));
    assert_clean("pg_dump", &dump, &secrets);

    // The reader may see delivery status, never the sealed secrets, references or bodies.
    for (table, column, visible) in [
        ("notification_channels", "secret_ciphertext", false),
        ("notification_channels", "secret_nonce", false),
        ("notification_channels", "url_ref", false),
        ("notification_channels", "email_to", false),
        ("notification_channels", "name", true),
        ("notification_outbox", "event", false),
        ("notification_outbox", "lease_token", false),
        ("notification_outbox", "status", true),
        ("notification_outbox", "last_error", true),
    ] {
        let can: bool = sqlx::query_scalar(&format!(
            "SELECT has_column_privilege('sspm_reader', 'sspm.{table}', '{column}', 'SELECT')"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(can, visible, "sspm_reader on {table}.{column}");
    }
}

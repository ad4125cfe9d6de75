//! `rotate-key` re-seals alert channel secrets with the tokens, and `alerts retry|show`.

use sqlx::PgPool;

use crate::support::alerts::{AlertWorld, Receiver};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn rotate_key_reseals_channel_secrets(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![]).await;
    let recv = Receiver::start().await;
    w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    let old_id: String = sqlx::query_scalar("SELECT secret_key_id FROM sspm.notification_channels")
        .fetch_one(&pool)
        .await
        .unwrap();
    let new_test_key = crate::support::TestKey::generate();
    let (new_ring, new_key) = (new_test_key.ring(), new_test_key.b64.clone());
    let mut rotating = w.env(&[]);
    rotating.retain(|(k, _)| k != "SSPM__SECURITY__TOKEN_KEY");
    rotating.push(("SSPM__SECURITY__TOKEN_KEY".into(), new_key.clone()));
    rotating.push(("SSPM__SECURITY__PREVIOUS_TOKEN_KEYS".into(), w.key.clone()));
    let out = crate::support::cli::run_cli(&["rotate-key"], &rotating, None).await;
    let (stdout, stderr) = crate::support::cli::text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("re-sealed 1 alert channel secret(s)"),
        "{stdout}"
    );
    let now_id: String = sqlx::query_scalar("SELECT secret_key_id FROM sspm.notification_channels")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_ne!(now_id, old_id);
    assert_eq!(now_id, new_ring.current_id());
    // The new key alone opens them: `channel test` signs and delivers.
    let mut only_new = w.env(&[]);
    only_new.retain(|(k, _)| k != "SSPM__SECURITY__TOKEN_KEY");
    only_new.push(("SSPM__SECURITY__TOKEN_KEY".into(), new_key));
    let out = crate::support::cli::run_cli(&["channel", "test", "siem"], &only_new, None).await;
    assert!(
        out.status.success(),
        "{:?}",
        crate::support::cli::text(&out)
    );
    assert_eq!(recv.hits_on("/hook").len(), 1);
    assert!(recv.hits_on("/hook")[0]
        .header("webhook-signature")
        .starts_with("v1,"));
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn failed_messages_can_be_shown_and_retried(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![]).await;
    let recv = Receiver::start().await;
    w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    let channel: uuid::Uuid = sqlx::query_scalar("SELECT id FROM sspm.notification_channels")
        .fetch_one(&pool)
        .await
        .unwrap();
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.notification_outbox (channel_id, kind, event, status, attempts, last_status_code, last_error)
         VALUES ($1, 'test', $2, 'failed', 1, 410, 'receiver refused the message with HTTP 410') RETURNING id",
    )
    .bind(channel)
    .bind(serde_json::json!({"schema": "intercom-sspm/alert", "version": 1, "type": "test",
        "at": chrono::Utc::now(), "instance": null, "scan_id": null, "health": null, "findings": []}))
    .fetch_one(&pool)
    .await
    .unwrap();
    let listed = w
        .cli(&["alerts", "list", "--status", "failed", "--wide"], None)
        .await;
    assert!(
        listed.contains(&id.to_string()) && listed.contains("410"),
        "{listed}"
    );
    let shown = w
        .cli(
            &["alerts", "show", &id.to_string(), "--format", "json"],
            None,
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["message"]["status"], "failed");
    assert_eq!(v["event"]["type"], "test");
    let out = w.cli(&["alerts", "retry", &id.to_string()], None).await;
    assert!(out.contains("due now"), "{out}");
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM sspm.notification_outbox WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    // A daemon delivers it now; a delivered message is not retried again.
    let mut d = w.daemon("r1", &[]);
    d.wait_ready(std::time::Duration::from_secs(30)).await;
    crate::support::db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE status = 'delivered'",
        1,
        std::time::Duration::from_secs(15),
    )
    .await;
    let (_, metrics) = d.get("/metrics").await;
    let m = crate::support::prometheus::parse_prometheus(&metrics).unwrap();
    assert_eq!(
        m.sum(
            "sspm_notifications_total",
            &[("kind", "webhook"), ("result", "delivered")]
        ),
        1.0,
        "{metrics}"
    );
    assert!(m.has("sspm_notification_outbox_pending"));
    assert!(m.has("sspm_notification_oldest_pending_age_seconds"));
    let out =
        crate::support::cli::run_cli(&["alerts", "retry", &id.to_string()], &w.env(&[]), None)
            .await;
    assert!(!out.status.success());
    assert!(crate::support::cli::text(&out).1.contains("delivered"));
}

//! Alerts end to end: channels added with the CLI, a real daemon scanning the simulator
//! and delivering to local receivers (HTTP on 127.0.0.1, a real SMTP server), the
//! signature checked by an independent Standard Webhooks implementation.

use std::time::{Duration, Instant};

use intercom_sspm::db::exceptions::{self, NewException};
use intercom_sspm::db::instances;
use intercom_sspm::db::scans::Trigger;
use intercom_sspm::status::InstanceStatus;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::alerts::{self as al, outbox_count, AlertWorld, Receiver, SmtpSink, TOKEN};

const READY: Duration = Duration::from_secs(30);

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_scan_reaches_webhook_slack_email_and_pagerduty(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![al::risky_workspace("acme", TOKEN)]).await;
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start();
    let secret = w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    w.cli(
        &[
            "channel",
            "add",
            "--name",
            "chat",
            "--kind",
            "slack",
            "--url",
            &recv.url("/slack"),
        ],
        None,
    )
    .await;
    let smtp_url = format!("smtp://127.0.0.1:{}?tls=none", smtp.port);
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
            "secops@example.com,ciso@example.com",
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
            "--on",
            "opened,reopened,resolved",
        ],
        Some("R0UTINGKEY0123456789abcdef012345\n"),
    )
    .await;
    let id = w.onboard("acme", TOKEN).await;
    let pd_url = recv.url("/pd");
    let mut d = w.daemon("r1", &[("SSPM__NOTIFY__PAGERDUTY_URL", &pd_url)]);
    d.wait_ready(READY).await;

    // The daemon scans at once (a new instance is due); the webhook follows within 5 s.
    let hooks = recv.wait_hits("/hook", 1, Duration::from_secs(30)).await;
    assert_eq!(hooks.len(), 1, "one webhook message: {}", d.logs());
    let finished: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT finished_at FROM sspm.scans WHERE instance_id = $1 AND status = 'succeeded'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let lag = chrono::Utc::now() - finished;
    assert!(
        lag < chrono::Duration::seconds(5),
        "delivered {lag} after the scan"
    );
    let hook = &hooks[0];
    assert_eq!(
        al::verify_with_standardwebhooks(&secret, hook, &hook.body),
        "verified"
    );
    // The independent verifier does reject a tampered body and a wrong secret.
    let mut tampered = hook.body.clone();
    tampered[10] ^= 1;
    assert!(al::verify_with_standardwebhooks(&secret, hook, &tampered).starts_with("rejected"));
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(al::verify_with_standardwebhooks(other, hook, &hook.body).starts_with("rejected"));
    let body = hook.json();
    assert_eq!(body["schema"], "intercom-sspm/alert");
    assert_eq!(body["version"], 1);
    assert_eq!(body["id"], hook.header("webhook-id"));
    assert_eq!(body["first_scan"], true);
    let findings = body["findings"].as_array().unwrap();
    assert_eq!(findings[0]["severity"], "critical", "{body}");
    assert!(findings
        .iter()
        .all(|f| f["severity"] == "critical" || f["severity"] == "high"));

    let slack = recv.wait_hits("/slack", 1, Duration::from_secs(10)).await;
    assert_eq!(slack.len(), 1);
    let blocks = slack[0].json();
    assert_eq!(blocks["blocks"][0]["type"], "header");
    assert!(blocks["text"].as_str().unwrap().contains("[acme]"));

    let mails = smtp.wait_messages(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1, "one email per scan per channel");
    let mail = &mails[0];
    assert!(mail.contains("multipart/alternative"), "{mail}");
    assert!(
        mail.contains("text/plain") && mail.contains("text/html"),
        "{mail}"
    );
    assert!(mail.contains("secops@example.com") && mail.contains("ciso@example.com"));

    let iv_id: Uuid = sqlx::query_scalar(
        "SELECT id FROM sspm.findings WHERE check_id = 'identity_verification_enabled'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // PagerDuty gets one event per finding, sent one after another: wait for this one
    // rather than for the first event to arrive.
    let trigger_for_iv = || {
        recv.hits_on("/pd/v2/enqueue")
            .iter()
            .map(|h| h.json())
            .find(|e| e["dedup_key"] == iv_id.to_string())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while trigger_for_iv().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let triggered = trigger_for_iv().unwrap_or_else(|| {
        panic!(
            "a trigger for the identity verification finding: {:?}",
            recv.hits_on("/pd/v2/enqueue")
                .iter()
                .map(|h| h.json()["dedup_key"].clone())
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(triggered["event_action"], "trigger");
    assert_eq!(triggered["routing_key"], "R0UTINGKEY0123456789abcdef012345");

    // Fix it and rescan: PagerDuty gets `resolve` for the same dedup_key.
    w.sim
        .scenario_handle()
        .update_workspace("acme", |ws| ws.identity_verification = true)
        .unwrap();
    let settings = crate::support::settings(Some(&w.sim), &[]);
    let scanner = crate::support::scanner(&pool, settings, harness_keyring(&w));
    let inst = instances::get(&pool, "acme").await.unwrap();
    scanner.scan(&inst, Trigger::Manual, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let resolved = loop {
        let found = recv
            .hits_on("/pd/v2/enqueue")
            .iter()
            .map(|h| h.json())
            .find(|e| e["event_action"] == "resolve" && e["dedup_key"] == iv_id.to_string());
        if found.is_some() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(resolved.is_some(), "PagerDuty resolve: {}", d.logs());
    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(20)).await.success());
}

fn harness_keyring(w: &AlertWorld) -> intercom_sspm::crypto::Keyring {
    intercom_sspm::crypto::Keyring::new(
        intercom_sspm::crypto::TokenKey::from_base64(&w.key, "test").unwrap(),
        vec![],
    )
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_first_scan_of_40_findings_sends_one_message(pool: PgPool) {
    let mut ws = crate::support::sim::workspace_json("big", "us", TOKEN, &["read_admins"]);
    let admins = ws["admins"].as_array_mut().unwrap();
    for i in 0..40 {
        admins.push(json!({ "id": format!("p{i}"), "name": format!("P {i}"),
            "email": format!("person{i}@gmail.com"), "role": { "id": "r2", "name": "Agent" } }));
    }
    let w = AlertWorld::new(&pool, vec![ws]).await;
    let recv = Receiver::start().await;
    w.add_webhook("all", &recv.url("/hook"), &["--min-severity", "info"])
        .await;
    w.onboard("big", TOKEN).await;
    let settings = crate::support::settings(Some(&w.sim), &[]);
    let scanner = crate::support::scanner(&pool, settings, harness_keyring(&w));
    let inst = instances::get(&pool, "big").await.unwrap();
    scanner.scan(&inst, Trigger::Manual, None).await.unwrap();
    let opened = crate::support::db::count(
        &pool,
        "SELECT count(*) FROM sspm.findings WHERE status = 'open'",
    )
    .await;
    assert!(opened >= 40, "{opened} findings");
    assert_eq!(
        outbox_count(&pool, "true").await,
        1,
        "one outbox row for the scan"
    );

    let mut d = w.daemon("r1", &[]);
    d.wait_ready(READY).await;
    let hits = recv.wait_hits("/hook", 1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(recv.hits_on("/hook").len(), 1, "exactly one message");
    let body = hits[0].json();
    assert_eq!(body["first_scan"], true);
    let listed =
        body["findings"].as_array().unwrap().len() as i64 + body["omitted"].as_i64().unwrap();
    assert_eq!(listed, opened, "the summary covers every opened finding");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_muted_finding_sends_nothing(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![al::risky_workspace("acme", TOKEN)]).await;
    let recv = Receiver::start().await;
    w.add_webhook(
        "iv",
        &recv.url("/hook"),
        &[
            "--checks",
            "identity_verification_enabled",
            "--on",
            "opened,reopened,resolved",
        ],
    )
    .await;
    let id = w.onboard("acme", TOKEN).await;
    exceptions::add(
        &pool,
        &NewException {
            instance_id: id,
            check_id: "identity_verification_enabled",
            resource: None,
            reason: "accepted for the pilot",
            author: "test",
            expires_at: None,
            force: false,
        },
    )
    .await
    .unwrap();
    let settings = crate::support::settings(Some(&w.sim), &[]);
    let scanner = crate::support::scanner(&pool, settings, harness_keyring(&w));
    let inst = instances::get(&pool, "acme").await.unwrap();
    scanner.scan(&inst, Trigger::Manual, None).await.unwrap();
    let muted = crate::support::db::count(
        &pool,
        "SELECT count(*) FROM sspm.findings WHERE check_id = 'identity_verification_enabled' AND status = 'muted'",
    )
    .await;
    assert_eq!(muted, 1, "the finding exists, muted");
    // Resolving a muted finding sends nothing either.
    w.sim
        .scenario_handle()
        .update_workspace("acme", |ws| ws.identity_verification = true)
        .unwrap();
    scanner.scan(&inst, Trigger::Manual, None).await.unwrap();
    assert_eq!(
        outbox_count(&pool, "true").await,
        0,
        "no alert for a muted finding"
    );
    assert!(recv.hits().is_empty());
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_rolled_back_scan_enqueues_nothing(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![al::risky_workspace("acme", TOKEN)]).await;
    let recv = Receiver::start().await;
    w.add_webhook("siem", &recv.url("/hook"), &["--min-severity", "info"])
        .await;
    let id = w.onboard("acme", TOKEN).await;
    let settings = crate::support::settings(Some(&w.sim), &[]);
    let scanner = crate::support::scanner(&pool, settings, harness_keyring(&w));
    let inst = instances::get(&pool, "acme").await.unwrap();
    // The existing fault: the scan's row was taken over (abandoned) while it ran, so its
    // transaction fails after writing findings and rolls back.
    let lease = Uuid::new_v4();
    let scan_id = Uuid::new_v4();
    sqlx::query("UPDATE sspm.instances SET lease_token = $2, lease_expires_at = now() + interval '1 minute' WHERE id = $1")
        .bind(id)
        .bind(lease)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sspm.scans (id, instance_id, status, trigger, finished_at) VALUES ($1, $2, 'abandoned', 'schedule', now())")
        .bind(scan_id)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let fence = intercom_sspm::scan::Fence {
        lease_token: lease,
        scan_id: Some(scan_id),
        next: intercom_sspm::scan::NextDue::Keep(chrono::Utc::now()),
    };
    let err = scanner
        .scan(&inst, Trigger::Schedule, Some(fence))
        .await
        .unwrap_err();
    assert!(
        matches!(err, intercom_sspm::scan::ScanError::LeaseLost(_)),
        "{err}"
    );
    assert_eq!(
        crate::support::db::count(&pool, "SELECT count(*) FROM sspm.findings").await,
        0
    );
    assert_eq!(
        outbox_count(&pool, "true").await,
        0,
        "a rolled-back scan alerts nobody"
    );

    // The same scan committed does enqueue: the zero above is the rollback's doing.
    scanner.scan(&inst, Trigger::Manual, None).await.unwrap();
    assert_eq!(outbox_count(&pool, "true").await, 1);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_revoked_token_is_a_health_alert(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![al::risky_workspace("acme", TOKEN)]).await;
    let recv = Receiver::start().await;
    w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    w.onboard("acme", TOKEN).await;
    let settings = crate::support::settings(Some(&w.sim), &[]);
    let scanner = crate::support::scanner(&pool, settings, harness_keyring(&w));
    let inst = instances::get(&pool, "acme").await.unwrap();
    scanner.scan(&inst, Trigger::Manual, None).await.unwrap();
    w.sim.scenario_handle().revoke_token(TOKEN).unwrap();
    let inst = instances::get(&pool, "acme").await.unwrap();
    assert_eq!(inst.status, InstanceStatus::Ok);
    let _ = scanner.scan(&inst, Trigger::Manual, None).await;
    let health: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT event->'health' FROM sspm.notification_outbox WHERE event->'health' <> 'null'::jsonb",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(health.len(), 1, "{health:?}");
    assert_eq!(health[0]["from"], "ok");
    assert_eq!(health[0]["to"], "unauthorized");
}

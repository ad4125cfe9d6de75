//! Alert delivery under faults: 5xx with backoff, 429 Retry-After, a sender SIGKILLed
//! mid-send, three replicas draining one outbox, digests with two replicas.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::support::alerts::{self as al, outbox_count, AlertWorld, Receiver, Reply, TOKEN};

const READY: Duration = Duration::from_secs(30);

/// Inserts `n` pending messages for `channel` (as a scan would, minus the scan).
async fn enqueue_direct(pool: &PgPool, channel: &str, n: usize) {
    let event = serde_json::json!({
        "schema": "intercom-sspm/alert", "version": 1, "type": "scan",
        "at": chrono::Utc::now(), "instance": null, "scan_id": null, "first_scan": false,
        "health": { "from": "ok", "to": "unauthorized", "detail": null },
        "findings": [], "omitted": 0, "digest": null
    });
    sqlx::query(
        "INSERT INTO sspm.notification_outbox (channel_id, kind, event)
         SELECT c.id, 'scan', $2 FROM sspm.notification_channels c, generate_series(1, $3)
         WHERE c.name = $1",
    )
    .bind(channel)
    .bind(event)
    .bind(n as i32)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn five_hundred_three_times_then_delivered_once_more_with_backoff(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![]).await;
    let recv = Receiver::start().await;
    recv.script(&[Reply::Status(500), Reply::Status(503), Reply::Status(500)]);
    w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    enqueue_direct(&pool, "siem", 1).await;
    let mut d = w.daemon("r1", &[]);
    d.wait_ready(READY).await;
    crate::support::db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE status = 'delivered'",
        1,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = recv.hits_on("/hook");
    assert_eq!(hits.len(), 4, "3 failures + 1 delivery: {}", d.logs());
    let ids: std::collections::BTreeSet<&str> =
        hits.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        1,
        "every attempt carries the same idempotency key"
    );
    // Backoff: base 400ms doubling with equal jitter -> gaps of at least 200, 400, 800 ms.
    let gaps: Vec<Duration> = hits.windows(2).map(|p| p[1].at - p[0].at).collect();
    for (i, (gap, min)) in gaps.iter().zip([200u64, 400, 800]).enumerate() {
        assert!(*gap >= Duration::from_millis(min), "gap {i} = {gap:?}");
    }
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM sspm.notification_outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("delivered", 4));
    let (_, text) = d.get("/metrics").await;
    let m = crate::support::prometheus::parse_prometheus(&text).unwrap();
    let kind = ("kind", "webhook");
    assert_eq!(
        m.sum("sspm_notifications_total", &[kind, ("result", "retry")]),
        3.0
    );
    assert_eq!(
        m.sum("sspm_notifications_total", &[kind, ("result", "delivered")]),
        1.0
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn four_hundred_is_failed_and_429_waits_for_retry_after(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![]).await;
    let recv = Receiver::start().await;
    let gone = Receiver::start().await;
    gone.script(&[Reply::Status(404)]);
    recv.script(&[Reply::TooMany(2)]);
    w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    w.add_webhook("gone", &gone.url("/hook"), &[]).await;
    enqueue_direct(&pool, "siem", 1).await;
    enqueue_direct(&pool, "gone", 1).await;
    let mut d = w.daemon("r1", &[]);
    d.wait_ready(READY).await;
    let hits = recv.wait_hits("/hook", 2, Duration::from_secs(20)).await;
    assert_eq!(hits.len(), 2, "{}", d.logs());
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "waited {gap:?} for Retry-After: 2"
    );
    crate::support::db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE status <> 'pending'",
        2,
        Duration::from_secs(10),
    )
    .await;
    let failed: (String, i32, Option<i32>) = sqlx::query_as(
        "SELECT o.status, o.attempts, o.last_status_code FROM sspm.notification_outbox o
         JOIN sspm.notification_channels c ON c.id = o.channel_id WHERE c.name = 'gone'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        failed,
        ("failed".to_string(), 1, Some(404)),
        "404 is permanent"
    );
    assert_eq!(gone.hits().len(), 1);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_sigkilled_sender_leaves_its_message_to_another_replica(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![]).await;
    let recv = Receiver::start().await;
    recv.hang(true);
    w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    enqueue_direct(&pool, "siem", 1).await;
    // r1 claims (3 s lease) and is stuck in the send when it dies.
    let mut r1 = w.daemon("r1", &[]);
    r1.wait_ready(READY).await;
    assert_eq!(
        recv.wait_hits("/hook", 1, Duration::from_secs(15))
            .await
            .len(),
        1
    );
    r1.kill9();
    recv.hang(false);
    assert_eq!(
        outbox_count(&pool, "lease_owner = 'r1' AND status = 'pending'").await,
        1,
        "r1 held the message when it died"
    );
    let mut r2 = w.daemon("r2", &[]);
    r2.wait_ready(READY).await;
    crate::support::db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE status = 'delivered'",
        1,
        Duration::from_secs(15),
    )
    .await;
    let hits = recv.hits_on("/hook");
    assert_eq!(hits.len(), 2, "{}", r2.logs());
    assert_eq!(hits[0].header("webhook-id"), hits[1].header("webhook-id"));
    assert!(
        hits[1].at - hits[0].at >= Duration::from_millis(2500),
        "sent again only after the dead replica's lease ended"
    );
    assert_eq!(outbox_count(&pool, "status = 'delivered'").await, 1);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn three_replicas_drain_200_messages_without_duplicates(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![]).await;
    let recv = Receiver::start().await;
    w.add_webhook("siem", &recv.url("/hook"), &[]).await;
    let mut daemons: Vec<_> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| w.daemon(n, &[]))
        .collect();
    for d in &mut daemons {
        d.wait_ready(READY).await;
    }
    enqueue_direct(&pool, "siem", 200).await;
    crate::support::db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE status = 'delivered'",
        200,
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = recv.hits_on("/hook");
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for h in &hits {
        *per_id
            .entry(h.header("webhook-id").to_string())
            .or_default() += 1;
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    let retried: i64 = al::outbox_count(&pool, "attempts > 1").await;
    eprintln!(
        "3 replicas x 200 messages: {} requests, {duplicates} duplicates, {retried} retried rows",
        hits.len()
    );
    assert_eq!(per_id.len(), 200, "every message arrived");
    // Nothing failed and no replica died: at-least-once allows no duplicate here.
    assert_eq!(duplicates, 0);
    assert_eq!(retried, 0);
    let owners = sqlx::query_scalar::<_, i64>(
        "SELECT count(DISTINCT lease_owner) FROM sspm.notification_outbox",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(owners, 0, "every lease released");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_digest_fires_once_per_slot_with_two_replicas(pool: PgPool) {
    let w = AlertWorld::new(&pool, vec![al::risky_workspace("acme", TOKEN)]).await;
    let recv = Receiver::start().await;
    // Every minute; the test waits for the next minute boundary.
    w.add_webhook(
        "daily",
        &recv.url("/hook"),
        &["--on", "health", "--digest", "* * * * *"],
    )
    .await;
    let mut r1 = w.daemon("r1", &[]);
    let mut r2 = w.daemon("r2", &[]);
    r1.wait_ready(READY).await;
    r2.wait_ready(READY).await;
    crate::support::db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE kind = 'digest' AND status = 'delivered'",
        1,
        Duration::from_secs(75),
    )
    .await;
    // Both replicas keep polling within the same slot: still one. Then stop both, so
    // the counts below are read from a quiet database (a slot committed between two
    // reads would otherwise look like a claim without its digest).
    tokio::time::sleep(Duration::from_secs(2)).await;
    crate::support::daemon::sigterm_and_expect_clean_exit(&mut r1, Duration::from_secs(30)).await;
    crate::support::daemon::sigterm_and_expect_clean_exit(&mut r2, Duration::from_secs(30)).await;
    let per_slot: Vec<(chrono::DateTime<chrono::Utc>, i64)> = sqlx::query_as(
        "SELECT digest_slot, count(*) FROM sspm.notification_outbox WHERE kind = 'digest' GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!per_slot.is_empty(), "{}\n{}", r1.logs(), r2.logs());
    assert!(per_slot.iter().all(|(_, n)| *n == 1), "{per_slot:?}");
    let slots: Vec<Uuid> = sqlx::query_scalar(
        "SELECT gen_random_uuid() FROM sspm.housekeeping_runs WHERE job LIKE 'digest:%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(slots.len(), per_slot.len(), "one slot claim per digest");
    let delivered = outbox_count(&pool, "kind = 'digest' AND status = 'delivered'").await;
    let digests: Vec<_> = recv
        .hits_on("/hook")
        .into_iter()
        .filter(|h| h.json()["type"] == "digest")
        .collect();
    assert_eq!(
        digests.len() as i64,
        delivered,
        "one delivery per delivered digest"
    );
    assert!(digests[0].json()["digest"]["open"].is_array());
}

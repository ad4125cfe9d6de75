//! notify_throughput: 10,000 pending alert messages in the outbox, one daemon draining
//! them to a local webhook receiver. Measured: messages per second from the first
//! request the receiver sees to the last row marked delivered. Target >= 1,000/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intercom_sspm::notify::channels::{self, ChannelKind, NewChannel, Secrets, WebhookFormat};
use intercom_sspm::notify::rules::Rules;
use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{as_refs, count, daemon_settings, log, round2, wait_count, Ctx, Daemon};

#[derive(Default)]
pub struct Seen {
    requests: AtomicU64,
    first: Mutex<Option<Instant>>,
}

async fn receive(axum::extract::State(seen): axum::extract::State<Arc<Seen>>) -> &'static str {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    let mut first = seen.first.lock().unwrap();
    first.get_or_insert_with(Instant::now);
    "ok"
}

/// A local receiver and one webhook channel to it that matches every finding
/// (min severity info, every transition). `throughput_steady` uses it when
/// `SSPM_BENCH_ALERT_CHANNEL=1`, to measure what alerting costs a scan.
pub async fn matching_channel(db: &super::Db, ctx: &Ctx) -> anyhow::Result<Arc<Seen>> {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let id = Uuid::new_v4();
    let secrets = Secrets {
        url: Some(SecretString::from(format!("http://{addr}/hook"))),
        signing_secret: Some(channels::generate_signing_secret()),
        routing_key: None,
    };
    let sealed = secrets.seal(&ctx.keyring, id);
    let rules = Rules {
        min_severity: intercom_sspm::checks::Severity::Info,
        events: intercom_sspm::notify::rules::Event::ALL.to_vec(),
        ..Rules::default()
    };
    channels::insert(
        &mut *db.pool.acquire().await?,
        &NewChannel {
            id,
            name: "bench-all",
            kind: ChannelKind::Webhook,
            format: Some(WebhookFormat::Json),
            email_from: None,
            email_to: &[],
            sealed: Some(&sealed),
            url_ref: None,
            rules: &rules,
        },
    )
    .await?;
    Ok(seen)
}

pub fn requests(seen: &Seen) -> u64 {
    seen.requests.load(Ordering::Relaxed)
}

pub async fn notify_throughput(ctx: &Ctx) -> anyhow::Result<Value> {
    let n: i64 = if ctx.quick { 3_000 } else { 10_000 };
    let db = ctx.fresh_db("notify_throughput").await?;
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let id = Uuid::new_v4();
    let secrets = Secrets {
        url: Some(SecretString::from(format!("http://{addr}/hook"))),
        signing_secret: Some(channels::generate_signing_secret()),
        routing_key: None,
    };
    let sealed = secrets.seal(&ctx.keyring, id);
    channels::insert(
        &mut *db.pool.acquire().await?,
        &NewChannel {
            id,
            name: "bench",
            kind: ChannelKind::Webhook,
            format: Some(WebhookFormat::Json),
            email_from: None,
            email_to: &[],
            sealed: Some(&sealed),
            url_ref: None,
            rules: &Rules::default(),
        },
    )
    .await?;
    // A typical grouped message: three findings with evidence.
    let finding = |i: u32| {
        json!({ "event": "opened", "finding_id": Uuid::new_v4(), "check_id": "admin_external_domain",
                "resource": format!("admin:{i}"), "status": "open", "severity": "high",
                "title": "Teammate with an email outside the organisation's domains",
                "remediation": "Remove the teammate or add the domain to allowed_domains.",
                "evidence": { "email": format!("person{i}@contractor.example") }, "compliance": {},
                "first_seen_at": chrono::Utc::now(), "last_seen_at": chrono::Utc::now(), "resolved_at": null })
    };
    let event = json!({
        "schema": "intercom-sspm/alert", "version": 1, "type": "scan", "at": chrono::Utc::now(),
        "instance": { "id": Uuid::new_v4(), "name": "bench-0", "region": "us", "workspace_id": "abc" },
        "scan_id": null, "first_scan": false, "health": null,
        "findings": [finding(1), finding(2), finding(3)], "omitted": 0, "digest": null
    });
    sqlx::query(
        "INSERT INTO sspm.notification_outbox (channel_id, kind, event)
         SELECT $1, 'scan', $2 FROM generate_series(1, $3)",
    )
    .bind(id)
    .bind(&event)
    .bind(n)
    .execute(&db.pool)
    .await?;
    sqlx::query("ANALYZE sspm.notification_outbox")
        .execute(&db.pool)
        .await?;
    log(format!("{n} pending messages; starting the daemon"));

    let mut settings = daemon_settings(8);
    settings.push(("SSPM__NOTIFY__POLL_INTERVAL", "200ms".into()));
    let mut daemon = Daemon::start(
        ctx,
        "notify_throughput",
        &db,
        "http://127.0.0.1:9",
        &as_refs(&settings),
    )?;
    const DELIVERED: &str =
        "SELECT count(*) FROM sspm.notification_outbox WHERE status = 'delivered'";
    wait_count(
        &db.pool,
        &mut daemon,
        DELIVERED,
        n,
        Duration::from_secs(300),
    )
    .await?;
    let done = Instant::now();
    let first = seen.first.lock().unwrap().expect("requests arrived");
    let requests = seen.requests.load(Ordering::Relaxed);
    let not_delivered = count(
        &db.pool,
        "SELECT count(*) FROM sspm.notification_outbox WHERE status <> 'delivered'",
    )
    .await?;
    daemon.stop()?;
    let secs = (done - first).as_secs_f64();
    let rate = n as f64 / secs;
    Ok(json!({
        "bench": "notify_throughput",
        "messages": n,
        "requests": requests,
        "not_delivered": not_delivered,
        "drain_seconds": round2(secs),
        "messages_per_s": round2(rate),
        "target": { "messages_per_s_gte": 1000 },
        "met": rate >= 1000.0 && not_delivered == 0 && requests as i64 >= n,
    }))
}

//! `/livez`, `/readyz` and `/metrics` of a running daemon: readiness, drain, scan counters
//! and gauges, bounded labels.

use std::time::{Duration, Instant};

use intercom_sspm::db::instances;
use intercom_sspm::region::Region;
use sqlx::PgPool;

use crate::support::daemon::READY;
use crate::support::prometheus::parse_prometheus;
use crate::support::sim::named_workspace;
use crate::support::{count, db, World};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn probes_and_metrics_report_readiness_drain_and_scans(pool: PgPool) {
    let w = World::builder(&pool)
        .workspaces(vec![
            named_workspace("m1", "us"),
            named_workspace("m2", "eu"),
        ])
        .build()
        .await;
    let mut d = w.daemon(
        "prober",
        &[
            ("SSPM__SHUTDOWN__DRAIN_TIMEOUT", "20s"),
            ("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s"),
        ],
    );
    d.wait_ready(READY).await;
    let (status, body) = d.get("/readyz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    assert_eq!(d.get("/livez").await.0, 200);

    // The gauges appear with the health monitor's first refresh, just after start-up.
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = loop {
        let m = parse_prometheus(&d.get("/metrics").await.1).unwrap();
        if m.has("sspm_due_backlog") || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        before.sum("sspm_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert_eq!(before.sum("sspm_scans_total", &[]), 0.0);
    for (name, kind) in [
        ("sspm_build_info", "gauge"),
        ("sspm_due_backlog", "gauge"),
        ("sspm_oldest_due_age_seconds", "gauge"),
        ("sspm_findings_open", "gauge"),
    ] {
        assert_eq!(
            before.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
        assert!(before.has(name), "{name} has a sample");
    }

    let m1 = w.onboard_named("m1", Region::Us, "1m").await;
    let m2 = w.onboard_named("m2", Region::Eu, "1m").await;
    instances::notify_wakeup(&pool).await.unwrap();
    assert_eq!(w.wait_succeeded(m1, 1, Duration::from_secs(10)).await, 1);
    assert_eq!(w.wait_succeeded(m2, 1, Duration::from_secs(10)).await, 1);
    // Gauges refresh every second (the poll interval, clamped to >= 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let text = d.get("/metrics").await.1;
    let after = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        after.sum(
            "sspm_scans_total",
            &[("region", "us"), ("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        after.sum(
            "sspm_scans_total",
            &[("region", "eu"), ("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        after
            .types
            .get("sspm_scan_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(after.sum("sspm_scan_duration_seconds_count", &[]), 2.0);
    assert_eq!(
        after.sum("sspm_scan_duration_seconds_bucket", &[("le", "+Inf")]),
        2.0
    );
    assert!(
        after.sum(
            "sspm_intercom_requests_total",
            &[("region", "us"), ("status", "200")]
        ) >= 2.0
    );
    assert_eq!(after.sum("sspm_due_backlog", &[]), 0.0);
    let open_findings: i64 = count(
        &pool,
        "SELECT count(*) FROM sspm.findings WHERE status = 'open'",
    )
    .await;
    assert_eq!(after.sum("sspm_findings_open", &[]), open_findings as f64);
    for severity in ["critical", "high", "medium", "low", "info"] {
        assert!(after.samples.iter().any(|s| s.name == "sspm_findings_open"
            && s.labels.get("severity").map(String::as_str) == Some(severity)));
    }
    // Bounded labels only: never one series per instance.
    let allowed = [
        "region", "outcome", "status", "severity", "version", "le", "job", "result", "kind",
    ];
    for s in &after.samples {
        assert!(
            s.labels.keys().all(|k| allowed.contains(&k.as_str())),
            "unexpected label in {s:?}"
        );
        assert!(
            !s.labels
                .values()
                .any(|v| v == "m1" || v == "m2" || v == &m1.to_string()),
            "per-instance label in {s:?}"
        );
    }

    // Draining: /readyz 503 with a reason, /livez still 200, metrics still served.
    w.slow("m1", "/admins", 3000);
    instances::queue_now(&pool, m1).await.unwrap();
    db::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
        1,
        Duration::from_secs(10),
    )
    .await;
    d.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    let (status, body) = loop {
        let r = d.get("/readyz").await;
        if r.0 == 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reason["status"], "not_ready");
    assert!(
        reason["reason"].as_str().unwrap().starts_with("draining"),
        "{body}"
    );
    assert_eq!(d.get("/livez").await.0, 200, "alive while draining");
    assert!(parse_prometheus(&d.get("/metrics").await.1).is_ok());
    let status = d.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{}", d.logs());
    assert_eq!(
        w.wait_succeeded(m1, 2, Duration::from_secs(1)).await,
        2,
        "the in-flight scan finished during the drain"
    );
    assert_eq!(d.get("/livez").await.0, 0, "nothing listens after exit");
    w.sim.shutdown().await;
}

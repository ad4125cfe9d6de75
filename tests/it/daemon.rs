//! `intercom-sspm run` as real processes against real Postgres (one fresh database per
//! test) and the in-process Intercom simulator: claiming, rescheduling, wake-ups,
//! several replicas, SIGKILL and SIGTERM, 429 snoozes, database outages, probes and
//! metrics. Daemons poll every 200 ms with 3 s leases; schedules are 1m or longer, and
//! tests force instances due with SQL plus NOTIFY sspm_wakeup.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use intercom_sim::{generate, FaultSpec, Simulator};
use intercom_sspm::crypto::Keyring;
use intercom_sspm::db::instances;
use intercom_sspm::region::Region;
use intercom_sspm::token::TokenSource;
use secrecy::SecretString;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::daemon_support::{self as ds, Daemon};
use crate::harness::{self, count};

const READY: Duration = Duration::from_secs(30);

struct World {
    pool: PgPool,
    sim: Simulator,
    keyring: Keyring,
    key: String,
    db_url: String,
}

impl World {
    async fn new(pool: &PgPool, workspaces: Vec<serde_json::Value>) -> World {
        let sim = harness::start_sim(json!({ "workspaces": workspaces })).await;
        let (keyring, key) = harness::keyring();
        World {
            pool: pool.clone(),
            sim,
            keyring,
            key,
            db_url: harness::database_url(pool),
        }
    }

    /// Onboards workspace `name` (id_code = name, token = token_of(name)).
    async fn onboard(&self, name: &str, region: Region, schedule: &str) -> Uuid {
        ds::onboard(
            &self.pool,
            &self.keyring,
            name,
            region,
            name,
            &token_of(name),
            schedule,
        )
        .await
    }

    fn daemon(&self, name: &str, extra: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(name, &self.db_url, &self.sim, &self.key, extra)
    }

    fn slow(&self, id_code: &str, endpoint: &str, latency_ms: u64) {
        let faults: FaultSpec =
            serde_json::from_value(json!({ "endpoints": [endpoint], "latency_ms": latency_ms }))
                .unwrap();
        self.sim
            .scenario_handle()
            .set_workspace_faults(id_code, faults)
            .unwrap();
    }

    fn heal(&self, id_code: &str) {
        self.sim
            .scenario_handle()
            .set_workspace_faults(id_code, FaultSpec::default())
            .unwrap();
    }

    /// Makes every enabled instance due now and wakes the daemons.
    async fn force_all_due(&self) {
        sqlx::query("UPDATE sspm.instances SET next_scan_at = now() WHERE lease_token IS NULL")
            .execute(&self.pool)
            .await
            .unwrap();
        instances::notify_wakeup(&self.pool).await.unwrap();
    }

    async fn succeeded(&self, id: Uuid) -> i64 {
        count(&self.pool, &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'succeeded'")).await
    }

    async fn wait_succeeded(&self, id: Uuid, at_least: i64, within: Duration) -> i64 {
        ds::wait_count(
            &self.pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'succeeded'"),
            at_least,
            within,
        )
        .await
    }

    /// Instances with fewer than `n` succeeded scans.
    async fn short_of(&self, n: i64) -> i64 {
        count(
            &self.pool,
            &format!(
                "SELECT count(*) FROM sspm.instances i WHERE (SELECT count(*) FROM sspm.scans s
                   WHERE s.instance_id = i.id AND s.status = 'succeeded') < {n}"
            ),
        )
        .await
    }

    async fn wait_all_succeeded(&self, n: i64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.short_of(n).await > 0 {
            assert!(
                Instant::now() < deadline,
                "{} instances still lack {n} succeeded scans",
                self.short_of(n).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn running_scans(&self) -> i64 {
        count(
            &self.pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
        )
        .await
    }

    async fn held_leases(&self) -> i64 {
        count(
            &self.pool,
            "SELECT count(*) FROM sspm.instances WHERE lease_token IS NOT NULL",
        )
        .await
    }
}

fn token_of(name: &str) -> String {
    format!("tok_{name}_5f1e0c9a2b7d")
}

fn ws(name: &str, region: &str) -> serde_json::Value {
    harness::workspace(
        name,
        region,
        &token_of(name),
        &["read_admins", "read_admin_activity_logs"],
    )
}

async fn sigterm_and_expect_clean_exit(d: &mut Daemon, within: Duration) {
    d.signal("TERM");
    let status = d.wait_exit(within).await;
    assert_eq!(
        status.code(),
        Some(0),
        "daemon {} exit status {status}:\n{}",
        d.name,
        d.logs()
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_scans_due_instances_reschedules_and_wakes_on_notify(pool: PgPool) {
    let w = World::new(
        &pool,
        vec![
            ws("alpha", "us"),
            ws("beta", "eu"),
            ws("gamma", "au"),
            ws("delta", "us"),
        ],
    )
    .await;
    let alpha = w.onboard("alpha", Region::Us, "1m").await;
    w.onboard("beta", Region::Eu, "1m").await;
    w.onboard("gamma", Region::Au, "1m").await;

    // Polling once a minute: whatever is scanned within seconds later was either due at
    // start-up or woken by NOTIFY sspm_wakeup.
    let mut d = w.daemon("solo", &[("SSPM__SCHEDULER__POLL_INTERVAL", "60s")]);
    d.wait_ready(READY).await;
    let done = ds::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'succeeded'",
        3,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done, 3, "{}", d.logs());

    // Rescheduled per schedule (1m) plus jitter (up to 5% = 3 s), counted from the claim.
    type Row = (
        String,
        String,
        Option<String>,
        f64,
        i32,
        String,
        Option<Uuid>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.trigger, s.replica, i.status, EXTRACT(EPOCH FROM i.next_scan_at - s.started_at)::float8,
                i.consecutive_failures, i.name, i.lease_token
         FROM sspm.scans s JOIN sspm.instances i ON i.id = s.instance_id ORDER BY i.name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for (trigger, replica, status, next_in, failures, name, lease) in &rows {
        assert_eq!(trigger, "schedule", "{name}");
        assert_eq!(replica, "solo", "{name}");
        assert_eq!(status.as_deref(), Some("ok"), "{name}");
        assert!(
            // 60 s + up to 3 s of jitter, measured from the claim; the slack covers the
            // moment between the claim statement and the scan task computing it.
            (59.5..=65.0).contains(next_in),
            "{name}: next scan {next_in}s after the claim"
        );
        assert_eq!(*failures, 0, "{name}");
        assert!(lease.is_none(), "{name}: lease released after the scan");
    }

    // A newly onboarded instance: due at once, and NOTIFY wakes the daemon long before
    // its next 60 s poll.
    let t0 = Instant::now();
    let delta = w.onboard("delta", Region::Us, "1m").await;
    instances::notify_wakeup(&pool).await.unwrap();
    assert_eq!(
        w.wait_succeeded(delta, 1, Duration::from_secs(10)).await,
        1,
        "{}",
        d.logs()
    );
    assert!(t0.elapsed() < Duration::from_secs(10));

    // Forced due by SQL (what `scan --queue` does): scanned again without a restart.
    instances::queue_now(&pool, alpha).await.unwrap();
    assert_eq!(
        w.wait_succeeded(alpha, 2, Duration::from_secs(10)).await,
        2,
        "{}",
        d.logs()
    );
    assert_eq!(ds::overlapping_scans(&pool).await, 0);

    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(15)).await;
    assert_eq!(w.running_scans().await, 0);
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_applies_instance_changes_without_restart(pool: PgPool) {
    let mut retoken = ws("retoken", "us");
    retoken["tokens"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "token": "tok_retoken_new_9a8b7c", "scopes": ["read_admins"] }));
    let w = World::new(
        &pool,
        vec![
            ws("keep", "us"),
            ws("disableme", "eu"),
            ws("removeme", "au"),
            ws("reschedule", "us"),
            retoken,
        ],
    )
    .await;
    let keep = w.onboard("keep", Region::Us, "1m").await;
    let disable = w.onboard("disableme", Region::Eu, "1m").await;
    let remove = w.onboard("removeme", Region::Au, "1m").await;
    let reschedule = w.onboard("reschedule", Region::Us, "1m").await;
    let retoken = w.onboard("retoken", Region::Us, "1m").await;

    let mut d = w.daemon("changes", &[]);
    d.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(20)).await;

    instances::set_enabled(&pool, disable, false).await.unwrap();
    assert!(instances::remove(&pool, remove).await.unwrap());
    instances::set_schedule(&pool, reschedule, Some("2h"), Utc::now())
        .await
        .unwrap();
    // The old token dies at Intercom; the operator stores a new one.
    w.sim
        .scenario_handle()
        .revoke_token(&token_of("retoken"))
        .unwrap();
    let sealed = w.keyring.seal(
        &SecretString::from("tok_retoken_new_9a8b7c".to_string()),
        retoken.as_bytes(),
    );
    instances::set_token(&pool, retoken, &TokenSource::Sealed(sealed))
        .await
        .unwrap();
    w.force_all_due().await;

    for id in [keep, reschedule, retoken] {
        assert_eq!(
            w.wait_succeeded(id, 2, Duration::from_secs(15)).await,
            2,
            "{id}:\n{}",
            d.logs()
        );
    }
    // The disabled instance was due in the same rounds: give the daemon a few more polls.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{disable}'")
        )
        .await,
        1,
        "disabled instance scanned"
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{remove}'")
        )
        .await,
        0
    );

    let next_in: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM i.next_scan_at - s.started_at)::float8 FROM sspm.instances i
         JOIN sspm.scans s ON s.id = i.last_scan_id WHERE i.id = $1",
    )
    .bind(reschedule)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        (7199.5..=7200.0 * 1.05 + 1.0).contains(&next_in),
        "new schedule 2h: next scan in {next_in}s"
    );

    let (status, failures): (String, i32) =
        sqlx::query_as("SELECT status, consecutive_failures FROM sspm.instances WHERE id = $1")
            .bind(retoken)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), failures),
        ("ok", 0),
        "the new token was used"
    );
    assert!(
        w.sim
            .scenario_handle()
            .token_calls("tok_retoken_new_9a8b7c")
            .unwrap_or(0)
            > 0
    );

    assert_eq!(
        d.get("/readyz").await.0,
        200,
        "still ready after the changes"
    );
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(15)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_never_starts_a_second_scan_of_an_instance_it_is_scanning(pool: PgPool) {
    let w = World::new(&pool, vec![ws("busy", "us")]).await;
    let busy = w.onboard("busy", Region::Us, "1m").await;
    w.slow("busy", "/admins", 2500);
    let mut d = w.daemon("one", &[("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s")]);
    d.wait_ready(READY).await;
    assert_eq!(
        ds::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    // An operator queues a scan (and another edits the schedule) while one runs: the
    // instance is "due" but its lease is live, so nobody may claim it.
    instances::queue_now(&pool, busy).await.unwrap();
    instances::set_schedule(&pool, busy, Some("1m"), Utc::now())
        .await
        .unwrap();
    instances::notify_wakeup(&pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans").await,
        1,
        "a second scan started:\n{}",
        d.logs()
    );
    // The request made during the scan is honoured after it, one scan after the other.
    assert!(
        w.wait_succeeded(busy, 2, Duration::from_secs(15)).await >= 2,
        "{}",
        d.logs()
    );
    assert_eq!(ds::overlapping_scans(&pool).await, 0);
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_honours_limits_and_claims_as_soon_as_a_permit_frees_up(pool: PgPool) {
    let us = ["p1", "p2", "p3", "p4", "p5"];
    let eu = ["q1", "q2"];
    let mut workspaces: Vec<_> = us.iter().map(|n| ws(n, "us")).collect();
    workspaces.extend(eu.iter().map(|n| ws(n, "eu")));
    let w = World::new(&pool, workspaces).await;
    for n in us {
        w.onboard(n, Region::Us, "1m").await;
        w.slow(n, "/admins", 300);
    }
    for n in eu {
        w.onboard(n, Region::Eu, "1m").await;
        w.slow(n, "/admins", 300);
    }
    // One US scan at a time (region limit), a poll every minute: five US scans within
    // seconds means each finished scan triggered the next claim instead of waiting for
    // the poll.
    let mut d = w.daemon(
        "serial",
        &[
            ("SSPM__SCHEDULER__POLL_INTERVAL", "60s"),
            ("SSPM__SCHEDULER__MAX_CONCURRENT_SCANS", "3"),
            ("SSPM__SCHEDULER__REGION_CONCURRENCY__US", "1"),
        ],
    );
    d.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(15)).await;
    assert_eq!(ds::overlapping_scans(&pool).await, 0);
    let concurrent = |filter: &'static str| {
        let pool = pool.clone();
        async move {
            count(
                &pool,
                &format!(
                    "SELECT count(*) FROM sspm.scans a JOIN sspm.instances ia ON ia.id = a.instance_id,
                            sspm.scans b JOIN sspm.instances ib ON ib.id = b.instance_id
                     WHERE a.id < b.id AND a.started_at < b.finished_at AND b.started_at < a.finished_at
                       AND {filter}"
                ),
            )
            .await
        }
    };
    assert_eq!(
        concurrent("ia.region = 'us' AND ib.region = 'us'").await,
        0,
        "region_concurrency.us = 1 was exceeded"
    );
    // The other region was not held back by the US limit: its scans ran beside US ones.
    assert!(
        concurrent("ia.region <> ib.region").await > 0,
        "EU scans waited for US ones"
    );
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_cancels_a_scan_whose_lease_was_taken_over(pool: PgPool) {
    let w = World::new(&pool, vec![ws("stolen", "us")]).await;
    let stolen = w.onboard("stolen", Region::Us, "1m").await;
    w.slow("stolen", "/admins", 6000);
    let mut d = w.daemon("loser", &[("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s")]);
    d.wait_ready(READY).await;
    assert_eq!(
        ds::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    // What a replica that believed the lease expired does: a new token, the old scan
    // marked abandoned.
    let t0 = Instant::now();
    sqlx::raw_sql(
        "UPDATE sspm.instances SET lease_token = gen_random_uuid(), lease_owner = 'thief',
                lease_expires_at = now() + interval '1 hour', next_scan_at = now() + interval '1 hour';
         UPDATE sspm.scans SET status = 'abandoned', finished_at = now(), error = 'taken over' WHERE status = 'running';",
    )
    .execute(&pool)
    .await
    .unwrap();
    // The heartbeat (every 1 s) notices and cancels long before /admins answers (6 s).
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let m = ds::parse_prometheus(&d.get("/metrics").await.1).unwrap();
        if m.sum("sspm_scans_total", &[("outcome", "lease_lost")]) == 1.0 {
            assert_eq!(m.sum("sspm_leases_lost_total", &[]), 1.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scan not cancelled:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The loser wrote nothing and left the new holder's lease alone.
    let owner: Option<String> =
        sqlx::query_scalar("SELECT lease_owner FROM sspm.instances WHERE id = $1")
            .bind(stolen)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(owner.as_deref(), Some("thief"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.check_results").await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status <> 'abandoned'"
        )
        .await,
        0
    );
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn three_daemons_scan_300_instances_without_double_scans_or_misses(pool: PgPool) {
    let params = generate::GenerateParams {
        workspaces: 300,
        admins_per_workspace: 3,
        events_per_workspace: 3,
        ..Default::default()
    };
    let scenario = generate::generate(&params);
    let sim = Simulator::start(scenario.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (keyring, key) = harness::keyring();
    let w = World {
        pool: pool.clone(),
        sim,
        keyring,
        key,
        db_url: harness::database_url(&pool),
    };
    for ws in &scenario.workspaces {
        ds::onboard(
            &pool,
            &w.keyring,
            &ws.id_code,
            crate::harness::product_region(ws.region),
            &ws.id_code,
            &ws.tokens[0].token,
            "1m",
        )
        .await;
    }

    let started = Instant::now();
    let mut daemons: Vec<Daemon> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| w.daemon(n, &[]))
        .collect();
    for d in &mut daemons {
        d.wait_ready(READY).await;
    }
    w.wait_all_succeeded(1, Duration::from_secs(90)).await;
    // A second full round while all three are claiming: every instance due at once again.
    w.force_all_due().await;
    w.wait_all_succeeded(2, Duration::from_secs(90)).await;
    eprintln!(
        "300 instances x 2 rounds on 3 daemons: {:?}",
        started.elapsed()
    );
    for d in &mut daemons {
        sigterm_and_expect_clean_exit(d, Duration::from_secs(20)).await;
    }

    assert_eq!(
        ds::overlapping_scans(&pool).await,
        0,
        "an instance was scanned twice at once"
    );
    assert_eq!(w.short_of(2).await, 0, "an instance was missed");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status <> 'succeeded'"
        )
        .await,
        0,
        "every scan succeeded"
    );
    assert_eq!(w.held_leases().await, 0);
    let per_replica: Vec<(String, i64)> = sqlx::query_as(
        "SELECT replica, count(*) FROM sspm.scans GROUP BY replica ORDER BY replica",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    eprintln!("scans per replica: {per_replica:?}");
    assert_eq!(
        per_replica.len(),
        3,
        "every replica claimed work: {per_replica:?}"
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sigkilled_daemons_leases_lapse_and_another_daemon_rescans(pool: PgPool) {
    let names = ["k1", "k2", "k3", "k4"];
    let w = World::new(&pool, names.iter().map(|n| ws(n, "us")).collect()).await;
    let mut ids = Vec::new();
    for n in names {
        ids.push(w.onboard(n, Region::Us, "1m").await);
        w.slow(n, "/admins", 30_000);
    }
    // A long request timeout so the slow /admins hangs instead of failing.
    let slow_client = [("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s")];
    let mut a = w.daemon("victim", &slow_client);
    a.wait_ready(READY).await;
    let running = ds::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'running' AND replica = 'victim'",
        4,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(running, 4, "{}", a.logs());
    // Let at least one heartbeat extend the leases before the crash.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    let leases: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, lease_expires_at FROM sspm.instances ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(leases.len(), 4);

    for n in names {
        w.heal(n);
    }
    let mut b = w.daemon("rescuer", &[]);
    b.wait_ready(READY).await;
    for id in &ids {
        let n = ds::wait_count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'succeeded' AND replica = 'rescuer'"),
            1,
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(n, 1, "{id} not rescanned:\n{}", b.logs());
    }

    for (id, lease_expires_at) in &leases {
        let (status, error, finished): (String, Option<String>, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT status, error, finished_at FROM sspm.scans WHERE instance_id = $1 AND replica = 'victim'")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(status, "abandoned", "{id}");
        assert!(error.unwrap_or_default().contains("lease expired"), "{id}");
        let rescue_started: DateTime<Utc> = sqlx::query_scalar(
            "SELECT started_at FROM sspm.scans WHERE instance_id = $1 AND replica = 'rescuer'",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            rescue_started >= *lease_expires_at,
            "{id}: rescued at {rescue_started} while the lease ran until {lease_expires_at}"
        );
        assert_eq!(
            finished,
            Some(rescue_started),
            "{id}: abandoned by the claim that took over"
        );
    }
    assert_eq!(ds::overlapping_scans(&pool).await, 0);
    let metrics = ds::parse_prometheus(&b.get("/metrics").await.1).unwrap();
    assert_eq!(metrics.sum("sspm_leases_reclaimed_total", &[]), 4.0);

    sigterm_and_expect_clean_exit(&mut b, Duration::from_secs(15)).await;
    w.sim.shutdown().await;
}

/// Receives sd_notify datagrams the way systemd does (NOTIFY_SOCKET).
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: tokio::net::UnixDatagram,
    seen: String,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
            seen: String::new(),
        }
    }

    /// Waits until a datagram containing `line` arrived.
    async fn expect(&mut self, line: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        while !self.seen.lines().any(|l| l == line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                    self.seen.push('\n');
                }
                _ => panic!("no {line} within {within:?}; got {:?}", self.seen),
            }
        }
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sigterm_lets_in_flight_scans_finish_and_claims_nothing_new(pool: PgPool) {
    let names = ["d1", "d2", "d3"];
    let mut workspaces: Vec<_> = names.iter().map(|n| ws(n, "eu")).collect();
    workspaces.push(ws("latecomer", "eu"));
    let w = World::new(&pool, workspaces).await;
    for n in names {
        w.onboard(n, Region::Eu, "1m").await;
        w.slow(n, "/admins", 1500);
    }
    let mut notify = NotifySocket::new();
    let mut env = ds::daemon_env(
        &w.db_url,
        &w.sim,
        &w.key,
        "drainer",
        &[("SSPM__SHUTDOWN__DRAIN_TIMEOUT", "10s")],
    );
    env.push(("NOTIFY_SOCKET".into(), notify.path.display().to_string()));
    let mut d = Daemon::spawn_with_env("drainer", env);
    notify.expect("READY=1", READY).await;
    assert_eq!(
        ds::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            3,
            Duration::from_secs(10)
        )
        .await,
        3
    );

    let t0 = Instant::now();
    d.signal("TERM");
    notify.expect("STOPPING=1", Duration::from_secs(5)).await;
    // Work that falls due while draining stays for other replicas.
    let latecomer = w.onboard("latecomer", Region::Eu, "1m").await;
    instances::notify_wakeup(&pool).await.unwrap();
    let status = d.wait_exit(Duration::from_secs(12)).await;
    assert_eq!(status.code(), Some(0), "{}", d.logs());
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "drained in {:?}",
        t0.elapsed()
    );

    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'succeeded'"
        )
        .await,
        3,
        "{}",
        d.logs()
    );
    assert_eq!(w.running_scans().await, 0);
    assert_eq!(w.held_leases().await, 0);
    assert_eq!(w.succeeded(latecomer).await, 0);
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM sspm.scans WHERE instance_id = '{latecomer}'")
        )
        .await,
        0,
        "claimed while draining"
    );
    // Finished scans were rescheduled normally, not handed back.
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances WHERE name <> 'latecomer' AND next_scan_at < now() + interval '50 seconds'").await, 0);
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sigterm_past_the_drain_timeout_hands_leases_back_and_abandons_scans(pool: PgPool) {
    let names = ["h1", "h2", "h3"];
    let w = World::new(&pool, names.iter().map(|n| ws(n, "au")).collect()).await;
    for n in names {
        w.onboard(n, Region::Au, "1m").await;
        w.slow(n, "/admins", 20_000);
    }
    // Leases of 30 s: if another replica scans within a few seconds, the lease was
    // handed back, not left to lapse.
    let long_lease = [
        ("SSPM__SCHEDULER__LEASE", "30s"),
        ("SSPM__SHUTDOWN__DRAIN_TIMEOUT", "1s"),
        ("SSPM__INTERCOM__REQUEST_TIMEOUT", "60s"),
    ];
    let mut d = w.daemon("leaver", &long_lease);
    d.wait_ready(READY).await;
    assert_eq!(
        ds::wait_count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
            3,
            Duration::from_secs(10)
        )
        .await,
        3
    );

    let t0 = Instant::now();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", d.logs());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        t0.elapsed()
    );

    assert_eq!(w.running_scans().await, 0);
    assert_eq!(w.held_leases().await, 0, "leases handed back");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.instances WHERE next_scan_at > now()"
        )
        .await,
        0,
        "due now for other replicas"
    );
    let abandoned: Vec<String> =
        sqlx::query_scalar("SELECT error FROM sspm.scans WHERE status = 'abandoned'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(abandoned.len(), 3);
    assert!(
        abandoned.iter().all(|e| e.contains("shut down")),
        "{abandoned:?}"
    );

    for n in names {
        w.heal(n);
    }
    let mut other = w.daemon("taker", &long_lease);
    other.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(8)).await;
    assert_eq!(ds::overlapping_scans(&pool).await, 0);
    sigterm_and_expect_clean_exit(&mut other, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn rate_limited_scan_snoozes_until_reset_without_counting_a_failure(pool: PgPool) {
    let w = World::new(&pool, vec![ws("limited", "us"), ws("broken", "us")]).await;
    let limited = w.onboard("limited", Region::Us, "6h").await;
    let broken = w.onboard("broken", Region::Us, "6h").await;
    sqlx::query("UPDATE sspm.instances SET consecutive_failures = 2 WHERE id = $1")
        .bind(limited)
        .execute(&pool)
        .await
        .unwrap();
    let handle = w.sim.scenario_handle();
    let reset: FaultSpec =
        serde_json::from_value(json!({ "rate_limited": { "reset_after_secs": 120 } })).unwrap();
    handle.set_workspace_faults("limited", reset).unwrap();
    let down: FaultSpec =
        serde_json::from_value(json!({ "server_error": { "status": 503 } })).unwrap();
    handle.set_workspace_faults("broken", down).unwrap();

    let mut d = w.daemon("snoozer", &[("SSPM__INTERCOM__MAX_RATE_LIMIT_WAIT", "1s")]);
    d.wait_ready(READY).await;
    let done = ds::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'failed'",
        2,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done, 2, "{}", d.logs());

    let row = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i32, f64, Option<String>, String)>(
                "SELECT i.consecutive_failures, EXTRACT(EPOCH FROM i.next_scan_at - s.finished_at)::float8, s.error_kind, i.status
                 FROM sspm.instances i JOIN sspm.scans s ON s.id = i.last_scan_id WHERE i.id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (failures, next_in, kind, status) = row(limited).await;
    assert_eq!(kind.as_deref(), Some("rate_limited"));
    assert_eq!(
        failures, 2,
        "a 429 is not a failure: the count is unchanged"
    );
    assert!(
        (115.0..=125.0).contains(&next_in),
        "snoozed until the reset (120 s), got {next_in}s"
    );
    assert_eq!(
        status, "pending",
        "a 429 says nothing about the instance's health"
    );
    // Contrast: a real failure counts and backs off from the first step (1 min).
    let (failures, next_in, kind, _) = row(broken).await;
    assert_eq!(kind.as_deref(), Some("unreachable"));
    assert_eq!(failures, 1);
    assert!(
        (55.0..=65.0).contains(&next_in),
        "first backoff step, got {next_in}s"
    );

    let m = ds::parse_prometheus(&d.get("/metrics").await.1).unwrap();
    assert_eq!(
        m.sum(
            "sspm_scans_total",
            &[("outcome", "rate_limited"), ("region", "us")]
        ),
        1.0
    );
    assert_eq!(m.sum("sspm_scans_total", &[("outcome", "failed")]), 1.0);
    assert!(m.sum("sspm_intercom_rate_limited_total", &[("region", "us")]) >= 1.0);
    assert!(m.sum("sspm_intercom_requests_total", &[("status", "429")]) >= 1.0);
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn database_outage_is_survived_without_lost_or_duplicate_rows(pool: PgPool) {
    let names: Vec<String> = (0..12).map(|i| format!("o{i}")).collect();
    let w = World::new(&pool, names.iter().map(|n| ws(n, "us")).collect()).await;
    for n in &names {
        w.onboard(n, Region::Us, "1m").await;
        w.slow(n, "/admins", 300);
    }
    let proxy = ds::PgProxy::start(ds::pg_addr(&w.db_url)).await;
    let env = ds::daemon_env(
        &proxy.url(&w.db_url),
        &w.sim,
        &w.key,
        "survivor",
        &[("SSPM__SCHEDULER__MAX_CONCURRENT_SCANS", "4")],
    );
    let mut d = Daemon::spawn_with_env("survivor", env);
    d.wait_ready(READY).await;
    w.wait_all_succeeded(1, Duration::from_secs(30)).await;

    // Outage 1: the database disappears (connections cut, new ones refused) while scans
    // are in flight.
    w.force_all_due().await;
    ds::wait_count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'running'",
        1,
        Duration::from_secs(5),
    )
    .await;
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = d.get("/readyz").await;
        if status == 503 {
            assert!(body.contains("database unreachable"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} while the database was gone:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.get("/livez").await.0, 200, "alive through the outage");
    // Longer than the lease: the leases of the interrupted scans lapse meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        d.try_exit().is_none(),
        "daemon died during the outage:\n{}",
        d.logs()
    );
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.get("/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after the outage:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Outage 2: the daemon's backends are terminated again and again (a Postgres restart
    // as clients see it).
    w.force_all_due().await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'intercom-sspm' AND datname = current_database()",
        )
        .execute(&pool)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let resumed = Utc::now();
    w.force_all_due().await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let missing = count(
            &pool,
            &format!(
                "SELECT count(*) FROM sspm.instances i WHERE NOT EXISTS (SELECT 1 FROM sspm.scans s
                   WHERE s.instance_id = i.id AND s.status = 'succeeded' AND s.started_at >= '{}')",
                resumed.to_rfc3339()
            ),
        )
        .await;
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} instances not scanned after the outages:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.try_exit().is_none(), "daemon died:\n{}", d.logs());
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(15)).await;

    assert_eq!(ds::overlapping_scans(&pool).await, 0);
    assert_eq!(w.running_scans().await, 0, "no scan left running");
    assert_eq!(w.held_leases().await, 0);
    // A scan either committed whole or not at all: every succeeded scan has its check
    // results, and no finding was opened twice.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans s WHERE s.status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM sspm.check_results c WHERE c.scan_id = s.id)").await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM (SELECT finding_id FROM sspm.finding_events WHERE from_status IS NULL GROUP BY finding_id HAVING count(*) > 1) x").await,
        0
    );
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn daemon_waits_for_the_database_at_start_up(pool: PgPool) {
    let w = World::new(&pool, vec![ws("early", "us")]).await;
    let early = w.onboard("early", Region::Us, "1m").await;
    let proxy = ds::PgProxy::start(ds::pg_addr(&w.db_url)).await;
    proxy.cut();
    let env = ds::daemon_env(&proxy.url(&w.db_url), &w.sim, &w.key, "patient", &[]);
    let mut d = Daemon::spawn_with_env("patient", env);
    // Alive (so a startup probe passes) but not ready while Postgres is away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get("/livez").await.0 != 200 {
        assert!(Instant::now() < deadline, "no /livez:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = d.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("starting"), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        d.try_exit().is_none(),
        "gave up on the database:\n{}",
        d.logs()
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.scans").await, 0);

    proxy.restore();
    d.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(w.wait_succeeded(early, 1, Duration::from_secs(10)).await, 1);
    sigterm_and_expect_clean_exit(&mut d, Duration::from_secs(10)).await;

    // A signal while still waiting for the database ends the daemon cleanly too.
    proxy.cut();
    let env = ds::daemon_env(&proxy.url(&w.db_url), &w.sim, &w.key, "quitter", &[]);
    let mut q = Daemon::spawn_with_env("quitter", env);
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.get("/livez").await.0 != 200 {
        assert!(Instant::now() < deadline, "no /livez:\n{}", q.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm_and_expect_clean_exit(&mut q, Duration::from_secs(10)).await;
    w.sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn probes_and_metrics_report_readiness_drain_and_scans(pool: PgPool) {
    let w = World::new(&pool, vec![ws("m1", "us"), ws("m2", "eu")]).await;
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
        let m = ds::parse_prometheus(&d.get("/metrics").await.1).unwrap();
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

    let m1 = w.onboard("m1", Region::Us, "1m").await;
    let m2 = w.onboard("m2", Region::Eu, "1m").await;
    instances::notify_wakeup(&pool).await.unwrap();
    assert_eq!(w.wait_succeeded(m1, 1, Duration::from_secs(10)).await, 1);
    assert_eq!(w.wait_succeeded(m2, 1, Duration::from_secs(10)).await, 1);
    // Gauges refresh every second (the poll interval, clamped to >= 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let text = d.get("/metrics").await.1;
    let after = ds::parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
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
        "region", "outcome", "status", "severity", "version", "le", "job", "result",
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
    ds::wait_count(
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
    assert!(ds::parse_prometheus(&d.get("/metrics").await.1).is_ok());
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

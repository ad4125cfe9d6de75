//! Benchmarks of stored history (issue 17):
//!
//! - `big_workspace_rescan`: the `big_workspace` workspace (20,000 admins, 200,000 events)
//!   scanned once (not measured), then 100 new events and a second foreground `scan`:
//!   peak RSS < 80 MiB, < 3 s wall. The re-scan reads the event window and per-teammate
//!   aggregates, not the whole look-back window.
//! - `retention_10m`: 10,000,000 stored activity events (spread over 120 days across the
//!   instances of a running daemon), then two steady passes of the daemon: one alone, one
//!   with the daily retention (`housekeeping::prune`, the function the daemon's cron job
//!   calls) started with it. Retention < 5 s; the pass with it <= 10 % slower.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::Utc;
use intercom_sspm::scheduler::housekeeping;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    as_refs, count, daemon_settings, generated, generated_meta, log, make_all_due, mib, round2,
    wait_child, wait_count, Ctx, Daemon, Db, Exit, FINISHED,
};

/// One foreground `intercom-sspm scan bench-0`; `SSPM_BENCH_WRAP` wraps it (a profiler).
fn scan_process(
    ctx: &Ctx,
    db: &Db,
    sim_url: &str,
    label: &str,
) -> anyhow::Result<(Exit, Duration)> {
    let wrap: Vec<String> = std::env::var("SSPM_BENCH_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut cmd = match wrap.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(&ctx.bin);
            c
        }
        None => Command::new(&ctx.bin),
    };
    ctx.sspm_env(&mut cmd, db, sim_url);
    let out = ctx.work.join(format!("{label}.scan.out"));
    cmd.args(["scan", "bench-0"])
        // 200k events at 150 per page is 1,334 pages; the default cap is 1,000.
        .env("SSPM__INTERCOM__MAX_PAGES", "5000")
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(
            ctx.work.join(format!("{label}.scan.log")),
        )?);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let exit = wait_child(&mut child)?;
    let wall = started.elapsed();
    if !exit.success {
        bail!("scan failed; see {}", out.display());
    }
    Ok((exit, wall))
}

pub(crate) async fn big_workspace_rescan(ctx: &Ctx) -> anyhow::Result<Value> {
    let (admins, events) = if ctx.quick {
        (5_000, 50_000)
    } else {
        (20_000, 200_000)
    };
    let new_events = 100;
    log(format!(
        "generating 1 workspace x {admins} admins x {events} events"
    ));
    let scenario = generated(1, admins, events);
    let path = ctx.write_scenario("big_workspace_rescan", &scenario)?;
    drop(scenario);
    let db = ctx.fresh_db("big_workspace_rescan").await?;
    let mut sim = ctx.start_sim("big_workspace_rescan", &path)?;
    ctx.onboard(&db, &generated_meta(&path)?, "1d", |_| {
        chrono::Duration::hours(1)
    })
    .await?;
    log("first scan of bench-0 (not measured)");
    let (first, first_wall) = scan_process(ctx, &db, &sim.url, "big_workspace_rescan.first")?;
    let stored_before = count(&db.pool, "SELECT count(*) FROM sspm.activity_events").await?;
    let r = sim.command(&format!("add-events {new_events}"))?;
    if r != "ok" {
        bail!("simulator: {r}");
    }
    let requests_before = sim.requests()?;
    log(format!(
        "{new_events} new events; re-scan of bench-0 (measured)"
    ));
    let (exit, wall) = scan_process(ctx, &db, &sim.url, "big_workspace_rescan")?;
    let stored = count(&db.pool, "SELECT count(*) FROM sspm.activity_events").await?;
    let requests = sim.requests()? - requests_before;
    let peak = mib(exit.max_rss_kib);
    let wall_s = wall.as_secs_f64();
    Ok(json!({
        "bench": "big_workspace_rescan",
        "admins": admins, "events": events, "new_events": new_events,
        "events_stored_before": stored_before,
        "events_stored_after": stored,
        "first_scan_wall_s": round2(first_wall.as_secs_f64()),
        "first_scan_peak_rss_mib": mib(first.max_rss_kib),
        "requests": requests,
        "wall_s": round2(wall_s),
        "cpu_s": round2(exit.cpu.as_secs_f64()),
        "peak_rss_mib": peak,
        "target": {"peak_rss_mib_lt": 80, "wall_s_lt": 3.0},
        "met": peak < 80.0 && wall_s < 3.0,
    }))
}

/// Spread of the bulk-loaded events before now.
const HISTORY_DAYS: i64 = 120;

/// Stores `total` events across `instances` in statements of one million rows, created at
/// deterministic times spread evenly over the last [`HISTORY_DAYS`] days.
async fn bulk_events(db: &Db, instances: &[Uuid], total: i64) -> anyhow::Result<()> {
    let step = 1_000_000i64;
    let mut from = 0;
    while from < total {
        let to = (from + step).min(total);
        let started = Instant::now();
        sqlx::query(
            r#"INSERT INTO sspm.activity_events
                   (instance_id, event_id, activity_type, performed_by_id, ip, created_at, metadata)
               SELECT ($1::uuid[])[1 + g % cardinality($1::uuid[])],
                      'bulk-' || g,
                      (ARRAY['admin_login_success', 'admin_logout', 'admin_away_mode_change'])[1 + g % 3],
                      ((g / 7) % 50)::text,
                      '198.51.100.' || (1 + g % 254),
                      now() - ((g * 2654435761) % ($4::bigint * 86400)) * interval '1 second',
                      '{"sign_in_method": "sso"}'::jsonb
               FROM generate_series($2::bigint, $3::bigint - 1) AS g"#,
        )
        .bind(instances)
        .bind(from)
        .bind(to)
        .bind(HISTORY_DAYS)
        .execute(&db.pool)
        .await?;
        log(format!(
            "stored {to} of {total} events ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        from = to;
    }
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE) sspm.activity_events")
        .execute(&db.pool)
        .await?;
    log(format!(
        "vacuum analyze ({:.1} s)",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// One steady pass: `add-events 20`, every instance due, wait for `n` more scans.
async fn steady_pass(
    db: &Db,
    sim: &mut super::SimProc,
    daemon: &mut Daemon,
    done_before: i64,
    n: i64,
) -> anyhow::Result<(Duration, i64)> {
    let r = sim.command("add-events 20")?;
    if r != "ok" {
        bail!("simulator: {r}");
    }
    let started = Instant::now();
    make_all_due(db).await?;
    let done = wait_count(
        &db.pool,
        daemon,
        FINISHED,
        done_before + n,
        Duration::from_secs(900),
    )
    .await?;
    Ok((started.elapsed(), done))
}

pub(crate) async fn retention_10m(ctx: &Ctx) -> anyhow::Result<Value> {
    let (n, total) = if ctx.quick {
        (200usize, 1_000_000i64)
    } else {
        (1_000, 10_000_000)
    };
    let name = "retention_10m";
    log(format!("generating {n} workspaces x 50 admins x 20 events"));
    let scenario = generated(n, 50, 20);
    let path = ctx.write_scenario(name, &scenario)?;
    drop(scenario);
    let db = ctx.fresh_db(name).await?;
    let mut sim = ctx.start_sim(name, &path)?;
    let meta = generated_meta(&path)?;
    let ids = ctx
        .onboard(&db, &meta, "1d", |_| chrono::Duration::hours(1))
        .await?;
    let settings = daemon_settings(32);
    let mut daemon = Daemon::start(ctx, name, &db, &sim.url, &as_refs(&settings))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.check_alive()?;
    log("warm-up pass (first scans)");
    make_all_due(&db).await?;
    let mut done = wait_count(
        &db.pool,
        &mut daemon,
        FINISHED,
        n as i64,
        Duration::from_secs(600),
    )
    .await?;
    log(format!("storing {total} events over {HISTORY_DAYS} days"));
    bulk_events(&db, &ids, total).await?;
    let stored = count(&db.pool, "SELECT count(*) FROM sspm.activity_events").await?;

    log("steady pass without retention");
    let (alone, d) = steady_pass(&db, &mut sim, &mut daemon, done, n as i64).await?;
    done = d;

    log("steady pass with the daily retention started at the same time");
    let pool = db.pool.clone();
    let retention = tokio::spawn(async move {
        // The daemon's job: make the coming months, then prune (retention.days = 90,
        // activity kept 61 days by the default check windows).
        let started = Instant::now();
        let now = Utc::now();
        housekeeping::ensure_activity_partitions(&pool, now).await?;
        let pruned = housekeeping::prune(&pool, 90, 61, now).await?;
        Ok::<_, sqlx::Error>((started.elapsed(), pruned))
    });
    let (with_retention, _) = steady_pass(&db, &mut sim, &mut daemon, done, n as i64).await?;
    let (retention_wall, pruned) = retention.await??;
    daemon.stop()?;
    let left = count(&db.pool, "SELECT count(*) FROM sspm.activity_events").await?;
    let slowdown = with_retention.as_secs_f64() / alone.as_secs_f64() - 1.0;
    let retention_s = retention_wall.as_secs_f64();
    Ok(json!({
        "bench": name,
        "workspaces": n,
        "events_stored": stored,
        "events_pruned": pruned.activity_events,
        "activity_partitions_dropped": pruned.activity_partitions_dropped,
        "events_left": left,
        "retention_s": round2(retention_s),
        "pass_alone_s": round2(alone.as_secs_f64()),
        "pass_with_retention_s": round2(with_retention.as_secs_f64()),
        "scans_per_s_alone": round2(n as f64 / alone.as_secs_f64()),
        "scans_per_s_with_retention": round2(n as f64 / with_retention.as_secs_f64()),
        "slowdown_pct": round2(slowdown * 100.0),
        "target": {"retention_s_lt": 5.0, "slowdown_pct_le": 10.0},
        "met": retention_s < 5.0 && slowdown <= 0.10,
    }))
}

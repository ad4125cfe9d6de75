//! `set-schedule` through the real binary: the one-minute floor holds for cron too, a
//! never-firing expression is refused, and the printed next run is the stored one, close
//! to the cron slot (jitter is capped for cron schedules).

use chrono::{DateTime, Timelike, Utc};
use sqlx::PgPool;

use crate::support::cli::{run_cli, text};
use crate::support::{db, sim};

async fn env_with_instance(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query(
        "INSERT INTO sspm.instances (name, region, token_ref, schedule) VALUES ('acme', 'us', 'env:ACME_TOKEN', '6h')",
    )
    .execute(pool)
    .await
    .unwrap();
    let mut env = sim::sim_env(None);
    env.push(("DATABASE_URL".into(), db::database_url(pool)));
    env
}

async fn stored(pool: &PgPool) -> (Option<String>, DateTime<Utc>) {
    sqlx::query_as("SELECT schedule, next_scan_at FROM sspm.instances WHERE name = 'acme'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sub_minute_and_never_firing_cron_schedules_are_refused(pool: PgPool) {
    let env = env_with_instance(&pool).await;
    for (schedule, says) in [
        ("*/2 * * * * *", "more often than the minimum of 1m"),
        ("* * * * * *", "more often than the minimum of 1m"),
        ("1s", "shorter than the minimum of 1m"),
        ("0 3 31 2 *", "never fires"),
        ("0 25 * * *", "hour field"),
    ] {
        let out = run_cli(&["instance", "set-schedule", "acme", schedule], &env, None).await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{schedule} was accepted");
        assert!(stderr.contains(says), "{schedule}: {stderr}");
    }
    assert_eq!(
        stored(&pool).await.0.as_deref(),
        Some("6h"),
        "nothing changed"
    );
    // At the floor it is accepted.
    let out = run_cli(
        &["instance", "set-schedule", "acme", "* * * * *"],
        &env,
        None,
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn set_schedule_prints_the_stored_next_run_near_the_cron_slot(pool: PgPool) {
    let env = env_with_instance(&pool).await;
    let out = run_cli(
        &[
            "instance",
            "set-schedule",
            "acme",
            "0 3 * * *",
            "--timezone",
            "Europe/Berlin",
        ],
        &env,
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let (schedule, next) = stored(&pool).await;
    assert_eq!(schedule.as_deref(), Some("CRON_TZ=Europe/Berlin 0 3 * * *"));
    // Jitter for cron is capped at scheduler.cron_jitter (1m), not 5% of a day (72m).
    let local = next.with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!((local.hour(), local.minute() <= 1), (3, true), "{local}");
    assert!(
        stdout.contains(&next.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            && stdout.contains("Europe/Berlin"),
        "the printed next run is the stored one: {stdout} vs {next}"
    );
    let show = run_cli(&["instance", "show", "acme"], &env, None).await;
    let (stdout, _) = text(&show);
    assert!(
        stdout.contains(&next.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        "{stdout}"
    );
}

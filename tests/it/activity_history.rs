//! Stored activity history (issue 17): what a re-scan reads of it (the event window one by
//! one, a failed-login run crossing into the window, aggregates for the rest), and the
//! monthly partitions of `sspm.activity_events` (ids unique across months, months created
//! ahead, retention dropping whole months).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, DurationRound, Utc};
use intercom_sspm::checks::{ActivityEvent, EventMetadata};
use intercom_sspm::db::activity::{self, ScanBounds};
use intercom_sspm::scheduler::housekeeping;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::count;

const INSTANCE: &str = "11111111-1111-1111-1111-111111111111";
const SCAN: &str = "a0000000-0000-0000-0000-000000000001";

async fn seed_instance(pool: &PgPool) -> Uuid {
    sqlx::raw_sql(&format!(
        "INSERT INTO sspm.instances (id, name, region, token_ref) VALUES ('{INSTANCE}', 'acme', 'us', 'env:T');
         INSERT INTO sspm.scans (id, instance_id, status, trigger) VALUES ('{SCAN}', '{INSTANCE}', 'running', 'manual');"
    ))
    .execute(pool)
    .await
    .unwrap();
    INSTANCE.parse().unwrap()
}

fn event(
    id: &str,
    kind: &str,
    by_id: Option<&str>,
    by_email: Option<&str>,
    at: DateTime<Utc>,
) -> ActivityEvent {
    ActivityEvent {
        id: id.into(),
        activity_type: kind.into(),
        performed_by_id: by_id.map(Into::into),
        performed_by_email: by_email.map(Into::into),
        ip: Some("198.51.100.7".into()),
        created_at: at,
        description: None,
        metadata: EventMetadata::from_json_text(None),
    }
}

async fn store(pool: &PgPool, instance: Uuid, events: &[ActivityEvent]) -> u64 {
    let mut conn = pool.acquire().await.unwrap();
    activity::insert(&mut conn, instance, SCAN.parse().unwrap(), events)
        .await
        .unwrap()
}

/// Whole seconds, so that times read back from Postgres compare equal.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn rescan_reads_the_event_window_one_by_one_and_aggregates_the_rest(pool: PgPool) {
    let instance = seed_instance(&pool).await;
    let now = now();
    let window_start = now - Duration::days(30);
    let m = Duration::minutes;
    let failure = "admin_login_failure";
    store(
        &pool,
        instance,
        &[
            // Older than the window: only "latest activity per teammate" is needed.
            event(
                "old-by-id",
                "admin_logout",
                Some("7"),
                None,
                now - Duration::days(50),
            ),
            event(
                "older-by-id",
                "admin_logout",
                Some("7"),
                None,
                now - Duration::days(60),
            ),
            event(
                "old-by-email",
                "admin_away_mode_change",
                None,
                Some(" Bo@Acme.COM "),
                now - Duration::days(45),
            ),
            // A failed login is no activity, and so not in the aggregate either.
            event(
                "old-failure",
                failure,
                Some("8"),
                None,
                now - Duration::days(40),
            ),
            // A failed-login run crossing into the window: f1 stands alone (more than 30
            // minutes before f2), f2..f4 follow each other within 30 minutes, so events
            // are read one by one from f2 on.
            event("f1", failure, Some("9"), None, window_start - m(180)),
            event("f2", failure, Some("9"), None, window_start - m(50)),
            event("f3", failure, Some("9"), None, window_start - m(25)),
            event(
                "success-in-run",
                "admin_login_success",
                Some("9"),
                None,
                window_start - m(10),
            ),
            event("f4", failure, Some("9"), None, window_start + m(5)),
            event(
                "recent",
                "admin_logout",
                Some("7"),
                None,
                now - Duration::days(2),
            ),
            // Beyond the look-back (91 days): neither read nor aggregated.
            event(
                "ancient",
                "admin_logout",
                Some("10"),
                None,
                now - Duration::days(100),
            ),
        ],
    )
    .await;

    let mut conn = pool.acquire().await.unwrap();
    let stored = activity::for_scan(
        &mut conn,
        instance,
        ScanBounds {
            lookback_from: now - Duration::days(91),
            events_needed_from: window_start,
            burst_gap_minutes: 30,
        },
    )
    .await
    .unwrap();
    assert_eq!(stored.events_from, window_start - m(50));
    let loaded: BTreeSet<&str> = stored.events.iter().map(|e| &*e.id).collect();
    assert_eq!(
        loaded,
        BTreeSet::from(["f2", "f3", "success-in-run", "f4", "recent"])
    );
    let mut by_id: Vec<(&str, DateTime<Utc>)> = stored
        .earlier
        .by_id
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    by_id.sort();
    assert_eq!(by_id, [("7", now - Duration::days(50))]);
    assert_eq!(stored.earlier.by_email.len(), 1);
    assert_eq!(
        stored.earlier.by_email.get("bo@acme.com"),
        Some(&(now - Duration::days(45)))
    );

    // Without a failure run the event window is the bound; a fetch that starts earlier
    // (a cursor older than the window) moves it back.
    sqlx::query("DELETE FROM sspm.activity_events WHERE activity_type = 'admin_login_failure'")
        .execute(&pool)
        .await
        .unwrap();
    let earlier_fetch = now - Duration::days(55);
    let stored = activity::for_scan(
        &mut conn,
        instance,
        ScanBounds {
            lookback_from: now - Duration::days(91),
            events_needed_from: earlier_fetch,
            burst_gap_minutes: 30,
        },
    )
    .await
    .unwrap();
    assert_eq!(stored.events_from, earlier_fetch);
    let loaded: BTreeSet<&str> = stored.events.iter().map(|e| &*e.id).collect();
    assert_eq!(
        loaded,
        BTreeSet::from(["old-by-id", "old-by-email", "success-in-run", "recent"])
    );
    assert_eq!(
        stored.earlier.by_id.get("7"),
        Some(&(now - Duration::days(60)))
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn an_event_id_is_stored_once_whatever_month_it_names(pool: PgPool) {
    let instance = seed_instance(&pool).await;
    let now = now();
    let first = event(
        "e1",
        "admin_logout",
        Some("1"),
        None,
        now - Duration::days(40),
    );
    assert_eq!(
        store(&pool, instance, std::slice::from_ref(&first)).await,
        1
    );
    // The same event again (the overlap window), and the same id with another time (a
    // different partition): neither is stored twice.
    let moved = event("e1", "admin_logout", Some("1"), None, now);
    assert_eq!(store(&pool, instance, &[first, moved]).await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.activity_events WHERE event_id = 'e1'"
        )
        .await,
        1
    );
}

async fn partition_of(pool: &PgPool, event_id: &str) -> String {
    sqlx::query_scalar("SELECT c.relname::text FROM sspm.activity_events e JOIN pg_class c ON c.oid = e.tableoid WHERE e.event_id = $1")
        .bind(event_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn coming_months_are_created_ahead_and_take_their_rows_from_the_default_partition(
    pool: PgPool,
) {
    let instance = seed_instance(&pool).await;
    let far = now() + Duration::days(200);
    store(
        &pool,
        instance,
        &[event("future", "admin_logout", None, None, far)],
    )
    .await;
    assert_eq!(
        partition_of(&pool, "future").await,
        "activity_events_default"
    );
    // The months of `far` and the next two are created; the row moves into its month.
    assert_eq!(
        housekeeping::ensure_activity_partitions(&pool, far)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        partition_of(&pool, "future").await,
        format!("activity_events_{}", far.format("y%Ym%m"))
    );
    assert_eq!(
        housekeeping::ensure_activity_partitions(&pool, far)
            .await
            .unwrap(),
        0
    );
    // What the daemon does at start-up: the current month and two ahead exist already.
    assert_eq!(
        housekeeping::ensure_activity_partitions(&pool, Utc::now())
            .await
            .unwrap(),
        0
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn retention_drops_months_wholly_past_the_cutoff_and_stray_old_rows(pool: PgPool) {
    let instance = seed_instance(&pool).await;
    // Mid-month, so that the cutoff (90 days before) is not at a month boundary.
    let month_start = Utc::now()
        .date_naive()
        .with_day0(0)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let now = month_start + Duration::days(14);
    let cutoff = now - Duration::days(90);
    let old = cutoff - Duration::days(40);
    let straddling = cutoff - Duration::days(1);
    for at in [old, straddling] {
        sqlx::query("SELECT sspm.activity_events_create_month($1)")
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
    let long_ago: DateTime<Utc> = "2001-01-01T00:00:00Z".parse().unwrap();
    let far_future: DateTime<Utc> = "2099-01-01T00:00:00Z".parse().unwrap();
    let e = |id: &str, at| event(id, "admin_logout", None, None, at);
    store(
        &pool,
        instance,
        &[
            e("old", old),
            e("straddling", straddling),
            e("long-ago", long_ago),
            e("far-future", far_future),
            e("recent", now - Duration::days(1)),
        ],
    )
    .await;
    assert_eq!(
        partition_of(&pool, "long-ago").await,
        "activity_events_default"
    );

    let pruned = housekeeping::prune(&pool, 90, 31, now).await.unwrap();
    // "old": its month is dropped whole; "long-ago": deleted from the DEFAULT partition.
    assert_eq!(pruned.activity_events, 2);
    assert!(pruned.activity_partitions_dropped >= 1, "{pruned:?}");
    let left: BTreeSet<String> = sqlx::query_scalar("SELECT event_id FROM sspm.activity_events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    // The month holding the cutoff stays until all of it is older.
    assert_eq!(
        left,
        BTreeSet::from(["straddling", "far-future", "recent"].map(String::from))
    );
    let old_month = format!("sspm.activity_events_{}", old.format("y%Ym%m"));
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&old_month)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(exists, None, "{old_month} should be dropped");

    // Pruning a scan clears its events' scan id (through the scan_id index).
    sqlx::query("UPDATE sspm.scans SET status = 'failed', started_at = $1, finished_at = $1")
        .bind(cutoff - Duration::days(1))
        .execute(&pool)
        .await
        .unwrap();
    let again = housekeeping::prune(&pool, 90, 31, now).await.unwrap();
    assert_eq!((again.scans, again.activity_events), (1, 0));
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.activity_events WHERE scan_id IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.activity_events").await,
        3
    );
}

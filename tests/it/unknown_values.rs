//! Stored values this build does not know are errors that say where they are, never a
//! silent default (an instance's region) or a silently dropped row (a finding's status).

use intercom_sspm::db::{findings, instances, leases, scans};
use intercom_sspm::region::Region;
use intercom_sspm::status::{FindingStatus, InstanceStatus, ScanStatus};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::db::instance_with_finding;

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn unknown_finding_status_is_an_error_naming_the_row(pool: PgPool) {
    let (instance, finding) = instance_with_finding(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let now = chrono::Utc::now();
    let known = leases::lock_for_scan_write(&mut conn, instance, None, now)
        .await
        .unwrap();
    assert!(
        matches!(known.lock, leases::WriteLock::Locked { .. }),
        "{known:?}"
    );
    assert_eq!(known.plan.existing.len(), 1);
    assert!(!known.any_channel_enabled, "no channel exists");
    // The same statement is the scan's fence: another holder's token, or no instance.
    let lost = leases::lock_for_scan_write(&mut conn, instance, Some(Uuid::new_v4()), now)
        .await
        .unwrap();
    assert_eq!(lost.lock, leases::WriteLock::LeaseLost);
    let none = leases::lock_for_scan_write(&mut conn, Uuid::new_v4(), None, now)
        .await
        .unwrap();
    assert_eq!(none.lock, leases::WriteLock::Gone);
    assert!(none.plan.existing.is_empty());
    // And it tells whether the outbox needs to read the channels: only enabled ones count.
    sqlx::query(
        "INSERT INTO sspm.notification_channels (name, kind, enabled, url_ref)
         VALUES ('paused', 'slack', false, 'env:SLACK_URL')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let paused = leases::lock_for_scan_write(&mut conn, instance, None, now)
        .await
        .unwrap();
    assert!(
        !paused.any_channel_enabled,
        "a disabled channel alerts nobody"
    );
    sqlx::query("UPDATE sspm.notification_channels SET enabled = true")
        .execute(&pool)
        .await
        .unwrap();
    let enabled = leases::lock_for_scan_write(&mut conn, instance, None, now)
        .await
        .unwrap();
    assert!(enabled.any_channel_enabled);

    // As a newer build (or a hand edit) might leave it.
    sqlx::query("ALTER TABLE sspm.finding_rows DROP CONSTRAINT findings_status_valid")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sspm.finding_rows SET status = 'archived' WHERE id = $1")
        .bind(finding)
        .execute(&pool)
        .await
        .unwrap();
    let err = leases::lock_for_scan_write(&mut conn, instance, None, chrono::Utc::now())
        .await
        .expect_err("an unknown status is not skipped");
    let message = format!("{err}");
    assert!(message.contains(&finding.to_string()), "{message}");
    assert!(message.contains("\"archived\""), "{message}");
    assert!(message.contains("sspm.findings"), "{message}");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn unknown_region_is_an_error_not_a_default(pool: PgPool) {
    let (instance, _) = instance_with_finding(&pool).await;
    let found = instances::find(&pool, "odd").await.unwrap().unwrap();
    assert_eq!(found.region, intercom_sspm::region::Region::Us);

    sqlx::query("ALTER TABLE sspm.instances DROP CONSTRAINT instances_region_valid")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sspm.instances SET region = 'mars' WHERE id = $1")
        .bind(instance)
        .execute(&pool)
        .await
        .unwrap();
    let err = instances::find(&pool, "odd")
        .await
        .expect_err("an unknown region is never read as us");
    let message = format!("{err:#}");
    assert!(message.contains("Region"), "{message}");
    assert!(message.contains("mars"), "{message}");
    assert!(instances::list(&pool).await.is_err());
}

/// Drops `constraint` on `table` and stores `value` in `column` of row `id`, as a newer
/// build (or a hand edit) might leave it.
async fn store_behind_the_check(
    pool: &PgPool,
    table: &str,
    constraint: &str,
    column: &str,
    id: Uuid,
    value: &str,
) {
    sqlx::query(&format!("ALTER TABLE {table} DROP CONSTRAINT {constraint}"))
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(&format!("UPDATE {table} SET {column} = $2 WHERE id = $1"))
        .bind(id)
        .bind(value)
        .execute(pool)
        .await
        .unwrap();
}

fn assert_names_row(err: &sqlx::Error, table: &str, id: Uuid, value: &str) {
    let message = err.to_string();
    assert!(message.contains(table), "{message}");
    assert!(message.contains(&id.to_string()), "{message}");
    assert!(message.contains(&format!("{value:?}")), "{message}");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn unknown_instance_status_is_an_error_naming_the_instance(pool: PgPool) {
    let (instance, _) = instance_with_finding(&pool).await;
    let found = instances::find(&pool, "odd").await.unwrap().unwrap();
    assert_eq!(found.status, InstanceStatus::Pending);
    let by_id = instances::find_by_id(&pool, instance)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((by_id.id, by_id.name.as_str()), (instance, "odd"));
    assert!(instances::find_by_id(&pool, Uuid::new_v4())
        .await
        .unwrap()
        .is_none());
    // The scheduler's claim reads the instance itself, with the same columns.
    let claim = || async {
        let claimed = leases::claim(
            &pool,
            Region::Us,
            10,
            "test",
            leases::LeaseTerms(std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
        assert_eq!(claimed.len(), 1, "the instance is due");
        claimed.into_iter().next().unwrap()
    };
    let claimed = claim().await.instance().unwrap();
    let after_claim = instances::find_by_id(&pool, instance)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&claimed).unwrap(),
        serde_json::to_value(&after_claim).unwrap(),
        "the claim reads what a look-up after it reads"
    );
    let due_again = "UPDATE sspm.instances SET lease_token = NULL, lease_owner = NULL,
                            lease_expires_at = NULL, lease_scan_id = NULL, next_scan_at = now()";

    store_behind_the_check(
        &pool,
        "sspm.instances",
        "instances_status_valid",
        "status",
        instance,
        "suspended",
    )
    .await;
    let err = instances::find(&pool, "odd")
        .await
        .expect_err("an unknown instance status is never read as another");
    assert_names_row(&err, "sspm.instances", instance, "suspended");
    // By id too (the scheduler's read after each claim).
    let err = instances::find_by_id(&pool, instance)
        .await
        .expect_err("nor read by id as another");
    assert_names_row(&err, "sspm.instances", instance, "suspended");
    let err = instances::list(&pool)
        .await
        .expect_err("nor skipped in a listing");
    assert_names_row(&err, "sspm.instances", instance, "suspended");
    // Nor by the claim (the scheduler then hands the lease back).
    sqlx::query(due_again).execute(&pool).await.unwrap();
    let err = claim()
        .await
        .instance()
        .expect_err("nor read by the claim as another");
    assert_names_row(&err, "sspm.instances", instance, "suspended");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn unknown_scan_status_is_an_error_naming_the_scan(pool: PgPool) {
    let (instance, _) = instance_with_finding(&pool).await;
    let scan = Uuid::new_v4();
    scans::insert_running(&pool, scan, instance, scans::Trigger::Manual, "test", None)
        .await
        .unwrap();
    let recent = scans::recent(&pool, instance, 10).await.unwrap();
    assert_eq!(recent[0].status, ScanStatus::Running);
    // Finished, so scans_finished_when_done holds for the value stored below.
    scans::mark_abandoned(&pool, scan, "test").await.unwrap();
    let recent = scans::recent(&pool, instance, 10).await.unwrap();
    assert_eq!(recent[0].status, ScanStatus::Abandoned);

    store_behind_the_check(
        &pool,
        "sspm.scans",
        "scans_status_valid",
        "status",
        scan,
        "paused",
    )
    .await;
    let err = scans::recent(&pool, instance, 10)
        .await
        .expect_err("an unknown scan status is an error");
    assert_names_row(&err, "sspm.scans", scan, "paused");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn finding_listings_name_a_finding_of_unknown_status(pool: PgPool) {
    let (_, finding) = instance_with_finding(&pool).await;
    let all = findings::FindingFilter::default();
    let listed = findings::list(&pool, &all).await.unwrap();
    assert_eq!(listed[0].status, FindingStatus::Open);
    let open = findings::FindingFilter {
        status: Some(FindingStatus::Open),
        ..Default::default()
    };
    assert_eq!(findings::list(&pool, &open).await.unwrap().len(), 1);

    store_behind_the_check(
        &pool,
        "sspm.finding_rows",
        "findings_status_valid",
        "status",
        finding,
        "archived",
    )
    .await;
    // Filtered on a known status, the row is not selected; listing every status names it.
    assert!(findings::list(&pool, &open).await.unwrap().is_empty());
    let err = findings::list(&pool, &all)
        .await
        .expect_err("an unknown finding status is not listed as another");
    assert_names_row(&err, "sspm.findings", finding, "archived");
}

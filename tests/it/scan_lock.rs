//! What a scan's write reads under the instance lock is what the lock's previous holder
//! committed: an exception added while the scan waited for the lock is in its plan, like
//! the findings that exception muted (`leases::lock_for_scan_write`).

use std::time::Duration;

use intercom_sspm::db::leases;
use intercom_sspm::status::FindingStatus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::db::instance_with_finding;

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn an_exception_added_while_the_scan_waits_for_the_lock_is_in_its_plan(pool: PgPool) {
    let (instance, finding) = instance_with_finding(&pool).await;

    // An exception being added, as `exceptions::add` does it: the instance row locked
    // first, then the exception and the finding it mutes; not committed yet.
    let mut adding = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM sspm.instances WHERE id = $1 FOR NO KEY UPDATE")
        .bind(instance)
        .execute(&mut *adding)
        .await
        .unwrap();
    let exception: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.exceptions (instance_id, check_id, resource, reason, author)
         VALUES ($1, 'admin_2fa', 'admin:1', 'break-glass account', 'test') RETURNING id",
    )
    .bind(instance)
    .fetch_one(&mut *adding)
    .await
    .unwrap();
    sqlx::query("UPDATE sspm.finding_rows SET status = 'muted', exception_id = $1 WHERE id = $2")
        .bind(exception)
        .bind(finding)
        .execute(&mut *adding)
        .await
        .unwrap();

    // The scan's write starts meanwhile and waits for the lock.
    let scan = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let start = leases::lock_for_scan_write(&mut tx, instance, None, chrono::Utc::now())
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            start
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!scan.is_finished(), "the scan waits for the instance lock");
    adding.commit().await.unwrap();
    let start = tokio::time::timeout(Duration::from_secs(10), scan)
        .await
        .expect("the scan gets the lock once the exception commits")
        .unwrap();

    assert!(matches!(start.lock, leases::WriteLock::Locked { .. }));
    let read = &start.plan.existing;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].status, FindingStatus::Muted);
    assert_eq!(read[0].exception_id, Some(exception));
    let exceptions: Vec<Uuid> = start.plan.exceptions.iter().map(|e| e.id).collect();
    assert_eq!(
        exceptions,
        [exception],
        "the exception that muted the finding is in force for the plan"
    );
}

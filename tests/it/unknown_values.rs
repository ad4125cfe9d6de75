//! Stored values this build does not know are errors that say where they are, never a
//! silent default (an instance's region) or a silently dropped row (a finding's status).

use intercom_sspm::db::{findings, instances};
use sqlx::PgPool;
use uuid::Uuid;

async fn instance_with_finding(pool: &PgPool) -> (Uuid, Uuid) {
    let instance: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.instances (id, name, region, token_ref, next_scan_at)
         VALUES (gen_random_uuid(), 'odd', 'us', 'env:ODD_TOKEN', now()) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let finding: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.findings (id, instance_id, check_id, resource, status, severity, title,
                                    remediation, first_seen_at, last_seen_at)
         VALUES (gen_random_uuid(), $1, 'admin_2fa', 'admin:1', 'open', 'high', 't', 'r', now(), now())
         RETURNING id",
    )
    .bind(instance)
    .fetch_one(pool)
    .await
    .unwrap();
    (instance, finding)
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn unknown_finding_status_is_an_error_naming_the_row(pool: PgPool) {
    let (instance, finding) = instance_with_finding(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let known = findings::existing_for_instance(&mut conn, instance)
        .await
        .unwrap();
    assert_eq!(known.len(), 1);

    // As a newer build (or a hand edit) might leave it.
    sqlx::query("ALTER TABLE sspm.findings DROP CONSTRAINT findings_status_valid")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sspm.findings SET status = 'archived' WHERE id = $1")
        .bind(finding)
        .execute(&pool)
        .await
        .unwrap();
    let err = findings::existing_for_instance(&mut conn, instance)
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

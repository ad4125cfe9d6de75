//! The scheduler's claim reads what a scan reads of its instance before calling Intercom
//! (`leases::Claimed::target`: one connection and one statement fewer per scan), and it
//! reads what `instances::scan_target` reads.

use intercom_sspm::db::{instances, leases};
use intercom_sspm::region::Region;
use intercom_sspm::token::TokenSource;
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn the_claim_reads_the_scan_target_as_a_look_up_does(pool: PgPool) {
    // One instance scanned before (overrides, cursors, a sealed token, attestations live,
    // repeated and expired), one never scanned with a token reference and nothing else.
    let scanned: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.instances (name, region, token_ciphertext, token_nonce, token_key_id,
                                     check_overrides, activity_cursor_at, activity_covered_from,
                                     last_success_at, next_scan_at)
         VALUES ('scanned', 'us', '\\x0102030405', '\\x0a0b0c0d0e0f101112131415', 'k1',
                 '{\"dormant_days\": 30}', now() - interval '1 hour', now() - interval '30 days',
                 now() - interval '1 hour', now() - interval '1 minute')
         RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let last_scan: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.scans (instance_id, status, trigger, finished_at)
         VALUES ($1, 'succeeded', 'schedule', now() - interval '1 hour') RETURNING id",
    )
    .bind(scanned)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE sspm.instances SET last_scan_id = $2 WHERE id = $1")
        .bind(scanned)
        .bind(last_scan)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO sspm.attestations (instance_id, control_id, evidence, author, expires_at)
         VALUES ($1, 'sso_enforced', 'e', 'a', now() + interval '1 day'),
                ($1, 'sso_enforced', 'e', 'a', now() + interval '2 days'),
                ($1, 'two_factor_required', 'e', 'a', now() - interval '1 day')",
    )
    .bind(scanned)
    .execute(&pool)
    .await
    .unwrap();
    let fresh: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.instances (name, region, token_ref, next_scan_at)
         VALUES ('fresh', 'us', 'env:SSPM_T', now() - interval '1 minute') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    let claimed = leases::claim(
        &pool,
        Region::Us,
        10,
        "test",
        leases::LeaseTerms(std::time::Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 2, "both are due");
    let mut conn = pool.acquire().await.unwrap();
    for c in &claimed {
        let at_claim = c.target();
        let looked_up = instances::scan_target(&mut conn, c.instance_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(at_claim.check_overrides, looked_up.check_overrides);
        assert_eq!(at_claim.activity_cursor_at, looked_up.activity_cursor_at);
        assert_eq!(
            at_claim.activity_covered_from,
            looked_up.activity_covered_from
        );
        assert_eq!(at_claim.has_completed_scan, looked_up.has_completed_scan);
        assert_eq!(at_claim.last_scan_id, looked_up.last_scan_id);
        assert_eq!(at_claim.attestations, looked_up.attestations);
        assert!(
            at_claim.now <= looked_up.now,
            "the database's clock at the claim"
        );
        match (&at_claim.token, &looked_up.token) {
            (Some(TokenSource::Sealed(a)), Some(TokenSource::Sealed(b))) => assert_eq!(a, b),
            (Some(TokenSource::Reference(a)), Some(TokenSource::Reference(b))) => {
                assert_eq!(a.to_string(), b.to_string())
            }
            other => panic!("token sources differ: {other:?}"),
        }
        if c.instance_id == scanned {
            assert_eq!(at_claim.attestations, vec!["sso_enforced".to_string()]);
            assert!(at_claim.has_completed_scan);
            assert_eq!(at_claim.last_scan_id, Some(last_scan));
            assert_eq!(at_claim.check_overrides["dormant_days"], 30);
        } else {
            assert_eq!(c.instance_id, fresh);
            assert!(at_claim.attestations.is_empty());
            assert!(!at_claim.has_completed_scan);
            assert!(matches!(at_claim.token, Some(TokenSource::Reference(_))));
        }
    }
}

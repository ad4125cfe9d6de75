//! The test's own database (a fresh one per `#[sqlx::test]`): storing instances, counting,
//! polling, and reading every table back.

use std::time::{Duration, Instant};

use intercom_sspm::crypto::Keyring;
use intercom_sspm::db::instances::{self, Instance, NewInstance};
use intercom_sspm::region::Region;
use intercom_sspm::token::TokenSource;
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

/// An instance to store. Defaults: region US, workspace id = name, no schedule (the
/// product default).
#[derive(Debug, Clone, Copy)]
pub struct Onboard<'a> {
    pub name: &'a str,
    pub region: Region,
    pub workspace_id: &'a str,
    pub schedule: Option<&'a str>,
}

impl<'a> Onboard<'a> {
    pub fn new(name: &'a str) -> Self {
        Onboard {
            name,
            region: Region::Us,
            workspace_id: name,
            schedule: None,
        }
    }

    pub fn region(self, region: Region) -> Self {
        Onboard { region, ..self }
    }

    pub fn workspace(self, workspace_id: &'a str) -> Self {
        Onboard {
            workspace_id,
            ..self
        }
    }

    pub fn schedule(self, schedule: &'a str) -> Self {
        Onboard {
            schedule: Some(schedule),
            ..self
        }
    }
}

/// Onboards an instance the way `instance add` stores it (token sealed under `keyring`,
/// bound to the row's id) without the `/me` round trip: tests onboard hundreds. Tests that
/// exercise onboarding itself run `instance add` through the binary instead.
pub async fn onboard(
    pool: &PgPool,
    keyring: &Keyring,
    spec: &Onboard<'_>,
    token: &str,
) -> Instance {
    let id = Uuid::new_v4();
    let sealed = keyring.seal(&SecretString::from(token.to_string()), id.as_bytes());
    insert(pool, spec, id, &TokenSource::Sealed(sealed)).await
}

/// Stores an instance with row id `id` and any token source (a sealed token made by the
/// caller, or a token reference).
pub async fn insert(pool: &PgPool, spec: &Onboard<'_>, id: Uuid, token: &TokenSource) -> Instance {
    instances::insert(
        pool,
        &NewInstance {
            id,
            name: spec.name,
            region: spec.region,
            workspace_id: spec.workspace_id,
            workspace_name: None,
            token,
            schedule: spec.schedule,
            allowed_domains: &[],
        },
    )
    .await
    .expect("instance inserted")
}

/// The URL of the database `pool` is connected to (sqlx::test makes one per test).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for storage tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    let db = pool
        .connect_options()
        .get_database()
        .expect("test pool names its database")
        .to_string();
    url.set_path(&format!("/{db}"));
    url.to_string()
}

/// The one i64 that `sql` selects.
pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `sql` (one i64) until it reaches `at_least`; returns the last value.
pub async fn wait_count(pool: &PgPool, sql: &str, at_least: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let n = count(pool, sql).await;
        if n >= at_least || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pairs of scans of the same instance whose [started_at, finished_at] intervals overlap
/// (a running scan counts as open-ended): any such pair is a double scan.
pub async fn overlapping_scans(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM sspm.scans a JOIN sspm.scans b
           ON a.instance_id = b.instance_id AND a.id < b.id
         WHERE a.started_at < COALESCE(b.finished_at, 'infinity')
           AND b.started_at < COALESCE(a.finished_at, 'infinity')",
    )
    .await
}

/// Every text cell of every table in schema sspm, to search for leaked secrets.
pub async fn all_table_text(pool: &PgPool) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'sspm' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = String::new();
    for t in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(x)::text FROM sspm.{t} x"))
                .fetch_all(pool)
                .await
                .unwrap();
        out.push_str(&rows.join("\n"));
    }
    out
}

/// An instance stored by SQL (no token, region US) with one open finding, for tests of
/// what a scan's write reads: (instance id, finding id).
pub async fn instance_with_finding(pool: &PgPool) -> (Uuid, Uuid) {
    let instance: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.instances (id, name, region, token_ref, next_scan_at)
         VALUES (gen_random_uuid(), 'odd', 'us', 'env:ODD_TOKEN', now()) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let finding: Uuid = sqlx::query_scalar(
        "INSERT INTO sspm.finding_rows (id, instance_id, check_id, resource, status, severity, title,
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

//! The consumer read path (migration 20261124000002, docs/DATABASE.md): the `sspm_reader`
//! role reads findings, history and inventory but never a token, and the convenience views
//! return what the docs promise. The SQL in docs/DATABASE.md is run as written (role
//! names made unique), so the docs cannot drift from the schema.
//!
//! `CREATE ROLE` is cluster-wide while `#[sqlx::test]` databases are not: `sspm_reader`
//! itself is shared by every test database (the migration tolerates that), and each test
//! makes its own uniquely named login role and drops it again, even when an assertion fails.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Row};

const ACME: &str = "11111111-1111-1111-1111-111111111111";
const GLOBEX: &str = "22222222-2222-2222-2222-222222222222";

/// Consumer tables the reader may read in full (docs/DATABASE.md lists them).
const CONSUMER_TABLES: &[&str] = &[
    "scans",
    "check_results",
    "findings",
    "finding_events",
    "admins",
    "activity_events",
    "exceptions",
    "attestations",
];
const VIEWS: &[&str] = &["open_findings", "instance_posture", "finding_history"];

/// Columns of `sspm.instances` that hold or locate a secret, or fence the scheduler.
const WITHHELD_INSTANCE_COLUMNS: &[&str] = &[
    "token_ciphertext",
    "token_nonce",
    "token_ref",
    "lease_token",
];

/// Columns of `sspm.instances` that DESIGN.md promises to consumers.
const CONTRACT_INSTANCE_COLUMNS: &[&str] = &[
    "id",
    "name",
    "region",
    "workspace_id",
    "workspace_name",
    "enabled",
    "schedule",
    "next_scan_at",
    "status",
    "last_scan_at",
    "created_at",
];

/// Two instances (one sealed token, one token reference), three scans, findings in every
/// status and severity mix, their history, and one row in every other consumer table.
const SEED: &str = r#"
INSERT INTO sspm.instances (id, name, region, workspace_id, workspace_name,
                            token_ciphertext, token_nonce, token_key_id, status, last_scan_at)
VALUES ('11111111-1111-1111-1111-111111111111', 'acme', 'eu', 'abc123', 'Acme Inc',
        '\x5ea1edc0ffee5ea1edc0ffee'::bytea, '\x000102030405060708090a0b'::bytea,
        '0a1b2c3d4e5f', 'ok', now());
INSERT INTO sspm.instances (id, name, region, token_ref, allowed_domains, schedule)
VALUES ('22222222-2222-2222-2222-222222222222', 'globex', 'us',
        'file:/run/secrets/intercom/globex', '{globex.com}', '6h');

INSERT INTO sspm.scans (id, instance_id, status, trigger, started_at, finished_at, score, coverage, error)
VALUES
  ('a0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'succeeded',
   'schedule', now() - interval '2 days', now() - interval '2 days' + interval '1 minute', 50, 0.5, NULL),
  ('a0000000-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111', 'succeeded',
   'manual', now() - interval '1 day', now() - interval '1 day' + interval '1 minute', 80, 0.9, NULL),
  -- The newest scan failed: it must not replace the latest score in instance_posture.
  ('a0000000-0000-0000-0000-000000000003', '11111111-1111-1111-1111-111111111111', 'failed',
   'schedule', now() - interval '1 hour', now() - interval '59 minutes', NULL, NULL, 'unauthorized');

INSERT INTO sspm.check_results (scan_id, instance_id, check_id, status, severity, reason, failed_count)
VALUES ('a0000000-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111',
        'admin_personal_email_domain', 'fail', 'high', NULL, 2),
       ('a0000000-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111',
        'admin_dormant', 'not_evaluated', 'medium', 'token may not read activity logs', 0);

INSERT INTO sspm.exceptions (id, instance_id, check_id, resource, reason, author, expires_at)
VALUES ('e0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111',
        'admin_shared_account', 'admin:104', 'shared on-call inbox, reviewed', 'sec@acme.com',
        now() + interval '30 days');

INSERT INTO sspm.finding_rows (id, instance_id, check_id, resource, status, severity, title, evidence,
                           remediation, compliance, first_seen_at, last_seen_at, resolved_at,
                           first_scan_id, last_scan_id, exception_id)
VALUES
  ('f0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111',
   'admin_personal_email_domain', 'admin:101', 'open', 'high', 'Teammate uses a personal email domain',
   '{"email_domain": "gmail.com"}', 'Replace the teammate''s email', '{"CIS": ["5.1"]}',
   now() - interval '2 days', now() - interval '1 day', NULL,
   'a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002', NULL),
  ('f0000000-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111',
   'admin_personal_email_domain', 'admin:102', 'open', 'high', 'Teammate uses a personal email domain',
   '{"email_domain": "outlook.com"}', 'Replace the teammate''s email', '{}',
   now() - interval '1 day', now() - interval '1 day', NULL,
   'a0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000002', NULL),
  ('f0000000-0000-0000-0000-000000000003', '11111111-1111-1111-1111-111111111111',
   'data_deleted', 'event:evt-1', 'open', 'critical', 'Workspace deletion requested',
   '{"activity_type": "workspace_deletion_request"}', 'Confirm with the requester', '{}',
   now() - interval '1 day', now() - interval '1 day', NULL,
   'a0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000002', NULL),
  ('f0000000-0000-0000-0000-000000000004', '11111111-1111-1111-1111-111111111111',
   'token_least_privilege', 'workspace', 'open', 'medium', 'Token holds more scopes than needed',
   '{"extra": ["tags"]}', 'Remove scopes', '{}',
   now() - interval '2 days', now() - interval '1 day', NULL,
   'a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002', NULL),
  ('f0000000-0000-0000-0000-000000000005', '11111111-1111-1111-1111-111111111111',
   'admin_without_role', 'admin:103', 'resolved', 'low', 'Teammate has no role',
   '{}', 'Assign a role', '{}',
   now() - interval '2 days', now() - interval '2 days', now() - interval '1 day',
   'a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002', NULL),
  ('f0000000-0000-0000-0000-000000000006', '11111111-1111-1111-1111-111111111111',
   'admin_shared_account', 'admin:104', 'muted', 'medium', 'Shared teammate account',
   '{"local_part": "support"}', 'Give each person their own seat', '{}',
   now() - interval '2 days', now() - interval '1 day', NULL,
   'a0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002',
   'e0000000-0000-0000-0000-000000000001');

INSERT INTO sspm.finding_events (finding_id, instance_id, scan_id, from_status, to_status, at, reason)
VALUES
  ('f0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111',
   'a0000000-0000-0000-0000-000000000001', NULL, 'open', now() - interval '2 days', NULL),
  ('f0000000-0000-0000-0000-000000000005', '11111111-1111-1111-1111-111111111111',
   'a0000000-0000-0000-0000-000000000001', NULL, 'open', now() - interval '2 days', NULL),
  ('f0000000-0000-0000-0000-000000000005', '11111111-1111-1111-1111-111111111111',
   'a0000000-0000-0000-0000-000000000002', 'open', 'resolved', now() - interval '1 day', NULL),
  ('f0000000-0000-0000-0000-000000000006', '11111111-1111-1111-1111-111111111111',
   'a0000000-0000-0000-0000-000000000001', NULL, 'open', now() - interval '2 days', NULL),
  ('f0000000-0000-0000-0000-000000000006', '11111111-1111-1111-1111-111111111111',
   'a0000000-0000-0000-0000-000000000002', 'open', 'muted', now() - interval '1 day',
   'exception: shared on-call inbox, reviewed');

INSERT INTO sspm.admin_rows (instance_id, admin_id, name, email, role, has_inbox_seat,
                         away_mode_enabled, first_seen_at, last_seen_at)
VALUES ('11111111-1111-1111-1111-111111111111', '101', 'Ann', 'ann@gmail.com', 'Admin', true,
        false, now() - interval '2 days', now() - interval '1 day');

INSERT INTO sspm.activity_events (instance_id, event_id, activity_type, performed_by_id,
                                  performed_by_email, ip, created_at, metadata)
VALUES ('11111111-1111-1111-1111-111111111111', 'evt-1', 'workspace_deletion_request', '101',
        'ann@gmail.com', '203.0.113.7', now() - interval '1 day', '{}');

INSERT INTO sspm.attestations (instance_id, control_id, evidence, author, expires_at)
VALUES ('11111111-1111-1111-1111-111111111111', 'manual_2fa_enforced', 'screenshot in ticket SEC-1',
        'sec@acme.com', now() + interval '90 days');
"#;

async fn seed(pool: &PgPool) {
    sqlx::raw_sql(SEED).execute(pool).await.expect("seed data");
}

/// SQLSTATE of a failed statement, or a panic naming the statement if it succeeded.
async fn sqlstate_of(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => panic!("{sql:?} should have been refused"),
        Err(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
            .unwrap_or_else(|| panic!("{sql:?} failed without a SQLSTATE: {e}")),
    }
}

/// Runs `setup` (SQL in which `{role}` stands for a fresh, unique role name) as the
/// database owner, then `body` with options that connect as that role, and drops the
/// role afterwards whatever `body` did (a panic is re-raised after the cleanup).
async fn with_login_role<F, Fut>(pool: &PgPool, setup: &str, body: F)
where
    F: FnOnce(PgConnectOptions) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Lower-case hex only: a valid unquoted identifier, so documented SQL can be reused.
    let role = format!("sspm_it_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&setup.replace("{role}", &role))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("role setup failed: {e}\n{setup}"));
    // A password too, so this works where the server asks for one (scram), not only
    // under trust auth.
    let password = uuid::Uuid::new_v4().simple().to_string();
    sqlx::raw_sql(&format!("ALTER ROLE {role} PASSWORD '{password}'"))
        .execute(pool)
        .await
        .expect("set the login role's password");
    let options = (*pool.connect_options())
        .clone()
        .username(&role)
        .password(&password);
    let outcome = AssertUnwindSafe(body(options)).catch_unwind().await;
    // DROP OWNED removes its grants in this database, without which DROP ROLE refuses.
    // It needs the role's privileges: a CREATEROLE (non-superuser) test user gets them by
    // granting itself membership first.
    sqlx::raw_sql(&format!(
        "GRANT {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role};"
    ))
    .execute(pool)
    .await
    .expect("drop login role");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A LOGIN role that is a member of `sspm_reader`, as an operator would set one up.
async fn with_reader_login<F, Fut>(pool: &PgPool, body: F)
where
    F: FnOnce(PgConnectOptions) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    with_login_role(
        pool,
        "CREATE ROLE {role} LOGIN; GRANT sspm_reader TO {role};",
        body,
    )
    .await
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn reader_reads_views_and_consumer_tables_but_never_a_token(pool: PgPool) {
    seed(&pool).await;
    with_reader_login(&pool, |options| async move {
        let mut conn = PgConnection::connect_with(&options)
            .await
            .expect("the reader login role can connect");

        for relation in CONSUMER_TABLES.iter().chain(VIEWS) {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM sspm.{relation}"))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("reader cannot read sspm.{relation}: {e}"));
            assert!(n > 0, "sspm.{relation} should show the seeded rows");
        }

        let rows = sqlx::query("SELECT id, name, region FROM sspm.instances ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .expect("non-secret instance columns are readable");
        let names: Vec<String> = rows.iter().map(|r| r.get("name")).collect();
        assert_eq!(names, ["acme", "globex"]);
        let cols = CONTRACT_INSTANCE_COLUMNS.join(", ");
        sqlx::query(&format!("SELECT {cols}, token_key_id FROM sspm.instances"))
            .fetch_all(&mut conn)
            .await
            .expect("every contract column of sspm.instances is readable");

        // 42501 = insufficient_privilege: refused by the grant, not by a typo in the query.
        for column in WITHHELD_INSTANCE_COLUMNS {
            let sql = format!("SELECT {column} FROM sspm.instances");
            assert_eq!(sqlstate_of(&mut conn, &sql).await, "42501", "{sql}");
        }
        let sql = "SELECT * FROM sspm.instances";
        assert_eq!(sqlstate_of(&mut conn, sql).await, "42501", "{sql}");
        // Internal bookkeeping stays private.
        let sql = "SELECT * FROM sspm.housekeeping_runs";
        assert_eq!(sqlstate_of(&mut conn, sql).await, "42501", "{sql}");

        // Read-only: no write on any table, whatever the member role tries.
        for sql in [
            "UPDATE sspm.finding_rows SET status = status",
            "DELETE FROM sspm.scans",
            "UPDATE sspm.instances SET enabled = false",
            "INSERT INTO sspm.exceptions (instance_id, check_id, reason, author) \
             VALUES ('11111111-1111-1111-1111-111111111111', 'x', 'y', 'z')",
        ] {
            assert_eq!(sqlstate_of(&mut conn, sql).await, "42501", "{sql}");
        }
        conn.close().await.expect("close reader connection");
    })
    .await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn reader_can_listen_for_scan_notifications(pool: PgPool) {
    with_reader_login(&pool, |options| {
        let pool = pool.clone();
        async move {
            let reader_pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("reader pool");
            let mut listener = PgListener::connect_with(&reader_pool).await.unwrap();
            listener.listen("sspm_findings").await.unwrap();
            // The daemon's payload shape (docs/DATABASE.md); LISTEN needs no privilege.
            let payload = format!(
                r#"{{"instance_id":"{ACME}","instance":"acme","scan_id":"a0000000-0000-0000-0000-000000000002","status":"succeeded","new":1,"resolved":0,"open":4}}"#
            );
            sqlx::query("SELECT pg_notify('sspm_findings', $1)")
                .bind(&payload)
                .execute(&pool)
                .await
                .unwrap();
            let note = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
                .await
                .expect("notification within 10s")
                .unwrap();
            assert_eq!(note.channel(), "sspm_findings");
            let json: serde_json::Value = serde_json::from_str(note.payload()).unwrap();
            assert_eq!(json["instance"], "acme");
            drop(listener);
            reader_pool.close().await;
        }
    })
    .await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn grants_inventory_is_read_only_and_withholds_secret_columns(pool: PgPool) {
    let can_login: bool =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'sspm_reader'")
            .fetch_one(&pool)
            .await
            .expect("sspm_reader exists");
    assert!(
        !can_login,
        "sspm_reader is NOLOGIN; operators grant it to login roles"
    );

    let readable: BTreeSet<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_attribute a \
         WHERE a.attrelid = 'sspm.instances'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
           AND has_column_privilege('sspm_reader', a.attrelid, a.attnum, 'SELECT')",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for column in WITHHELD_INSTANCE_COLUMNS {
        assert!(
            !readable.contains(*column),
            "{column} must not be readable: {readable:?}"
        );
    }
    for column in CONTRACT_INSTANCE_COLUMNS {
        assert!(readable.contains(*column), "{column} must be readable");
    }

    // No write privilege of any kind on anything in the schema.
    let writable: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'sspm' AND c.relkind IN ('r', 'v', 'm', 'p') \
           AND has_table_privilege('sspm_reader', c.oid, \
                 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(writable.is_empty(), "sspm_reader may write {writable:?}");

    // No view, present or future, may carry a token or the lease fence. Catalog-wide so a
    // view added later without thought fails here.
    let leaky: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE n.nspname = 'sspm' AND c.relkind IN ('v', 'm') AND a.attnum > 0 \
           AND (a.attname LIKE 'token%' OR a.attname = 'lease_token' \
                OR a.atttypid = 'bytea'::regtype)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(leaky.is_empty(), "views expose secret columns: {leaky:?}");
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn views_return_what_the_docs_promise(pool: PgPool) {
    seed(&pool).await;

    let open = sqlx::query(
        "SELECT finding_id::text, instance_id::text, instance_name, region, check_id, severity, \
                severity_rank, title, resource, evidence, remediation, compliance, \
                first_seen_at, last_seen_at \
         FROM sspm.open_findings ORDER BY severity_rank, resource",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Vec<(String, String, i32)> = open
        .iter()
        .map(|r| (r.get("resource"), r.get("severity"), r.get("severity_rank")))
        .collect();
    assert_eq!(
        got,
        [
            ("event:evt-1".to_string(), "critical".to_string(), 1),
            ("admin:101".into(), "high".into(), 2),
            ("admin:102".into(), "high".into(), 2),
            ("workspace".into(), "medium".into(), 3),
        ],
        "only open findings (not resolved, not muted), critical first"
    );
    for r in &open {
        assert_eq!(r.get::<String, _>("instance_id"), ACME);
        assert_eq!(r.get::<String, _>("instance_name"), "acme");
        assert_eq!(r.get::<String, _>("region"), "eu");
    }
    let evidence: serde_json::Value = open[1].get("evidence");
    assert_eq!(evidence["email_domain"], "gmail.com");

    let posture = sqlx::query(
        "SELECT id::text, name, region, workspace_id, workspace_name, enabled, status, \
                status_detail, last_scan_at, latest_scan_id::text, latest_score, \
                latest_coverage, latest_scan_finished_at, \
                open_critical, open_high, open_medium, open_low, open_info, open_total \
         FROM sspm.instance_posture ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(posture.len(), 2, "one row per instance, scanned or not");
    let acme = &posture[0];
    assert_eq!(acme.get::<String, _>("id"), ACME);
    assert_eq!(acme.get::<String, _>("workspace_name"), "Acme Inc");
    assert_eq!(
        acme.get::<Option<String>, _>("latest_scan_id").as_deref(),
        Some("a0000000-0000-0000-0000-000000000002"),
        "the latest SUCCEEDED scan, not the newer failed one"
    );
    assert_eq!(acme.get::<Option<f64>, _>("latest_score"), Some(80.0));
    assert_eq!(acme.get::<Option<f64>, _>("latest_coverage"), Some(0.9));
    let counts: Vec<i64> = [
        "open_critical",
        "open_high",
        "open_medium",
        "open_low",
        "open_info",
        "open_total",
    ]
    .iter()
    .map(|c| acme.get(*c))
    .collect();
    assert_eq!(
        counts,
        [1, 2, 1, 0, 0, 4],
        "muted and resolved are not open"
    );
    let globex = &posture[1];
    assert_eq!(globex.get::<String, _>("id"), GLOBEX);
    assert_eq!(globex.get::<Option<String>, _>("latest_scan_id"), None);
    assert_eq!(globex.get::<Option<f64>, _>("latest_score"), None);
    assert_eq!(globex.get::<i64, _>("open_total"), 0, "0, never NULL");

    let history = sqlx::query(
        "SELECT at, instance_name, check_id, resource, severity, title, from_status, to_status, \
                reason, scan_id::text \
         FROM sspm.finding_history WHERE resource IN ('admin:103', 'admin:104') \
         ORDER BY resource, at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let transitions: Vec<(String, Option<String>, String)> = history
        .iter()
        .map(|r| (r.get("resource"), r.get("from_status"), r.get("to_status")))
        .collect();
    assert_eq!(
        transitions,
        [
            ("admin:103".to_string(), None, "open".to_string()),
            ("admin:103".into(), Some("open".into()), "resolved".into()),
            ("admin:104".into(), None, "open".into()),
            ("admin:104".into(), Some("open".into()), "muted".into()),
        ]
    );
    assert!(history
        .iter()
        .all(|r| r.get::<String, _>("instance_name") == "acme"));
    assert_eq!(
        history[3].get::<Option<String>, _>("reason").as_deref(),
        Some("exception: shared on-call inbox, reviewed")
    );
    assert_eq!(
        history[1].get::<String, _>("check_id"),
        "admin_without_role"
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn migration_reruns_cleanly_and_narrows_a_broad_grant(pool: PgPool) {
    // An operator "helpfully" granted the whole table; re-applying the migration (as a
    // recovery step, or on a cluster where sspm_reader already existed) must take the
    // secret columns back while keeping the rest.
    sqlx::query("GRANT SELECT ON sspm.instances TO sspm_reader")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(include_str!(
        "../../migrations/20261124000002_consumer_read_path.sql"
    ))
    .execute(&pool)
    .await
    .expect("the migration is re-runnable");
    let (ciphertext, name): (bool, bool) = sqlx::query_as(
        "SELECT has_column_privilege('sspm_reader', 'sspm.instances', 'token_ciphertext', 'SELECT'), \
                has_column_privilege('sspm_reader', 'sspm.instances', 'name', 'SELECT')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!ciphertext, "re-running revokes the broad grant");
    assert!(name, "and re-grants the safe columns");
}

/// The ```sql blocks of docs/DATABASE.md, in order.
fn documented_sql() -> Vec<String> {
    let doc = include_str!("../../docs/DATABASE.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match current.as_mut() {
            None if line.trim_start().starts_with("```sql") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "unterminated ```sql block");
    blocks
}

/// The one documented block containing `needle`.
fn documented_block(needle: &str) -> String {
    let found: Vec<String> = documented_sql()
        .into_iter()
        .filter(|b| b.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "exactly one ```sql block with {needle:?}");
    found.into_iter().next().unwrap()
}

fn is_query(block: &str) -> bool {
    let first = block
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .unwrap_or("");
    first.starts_with("SELECT") || first.starts_with("WITH")
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn documented_grant_and_example_queries_work(pool: PgPool) {
    seed(&pool).await;
    let queries: Vec<String> = documented_sql()
        .into_iter()
        .filter(|b| is_query(b))
        .collect();
    assert!(
        queries.len() >= 6,
        "the docs' example queries: {}",
        queries.len()
    );
    // The docs' own `CREATE ROLE dashboards ...; GRANT sspm_reader TO dashboards;`.
    let grant = documented_block("GRANT sspm_reader TO dashboards").replace("dashboards", "{role}");
    with_login_role(&pool, &grant, |options| async move {
        let mut conn = PgConnection::connect_with(&options).await.unwrap();
        for sql in &queries {
            let rows = sqlx::query(sql)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("documented query fails as a reader: {e}\n{sql}"));
            // Spot-check that the examples answer their question on the seed data.
            if sql.contains("GROUP BY instance_name, region") {
                assert_eq!(rows.len(), 1, "acme has open high/critical findings");
                assert_eq!(rows[0].get::<i64, _>("critical"), 1);
                assert_eq!(rows[0].get::<i64, _>("high"), 2);
            }
            if sql.contains("split_part(a.email") {
                let emails: Vec<String> = rows.iter().map(|r| r.get("email")).collect();
                assert_eq!(emails, ["ann@gmail.com"]);
            }
            if sql.contains("mean_time_to_resolve") {
                assert_eq!(rows.len(), 1, "admin_without_role was resolved once");
                assert_eq!(rows[0].get::<String, _>("check_id"), "admin_without_role");
            }
        }
        conn.close().await.unwrap();
    })
    .await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn documented_sql_onboarding_works_with_the_documented_role(pool: PgPool) {
    let insert = documented_block("INSERT INTO sspm.instances");
    let grant = documented_block("GRANT INSERT").replace("onboarding", "{role}");
    with_login_role(&pool, &grant, |options| async move {
        let mut conn = PgConnection::connect_with(&options).await.unwrap();
        // The docs say SELECT (id, name) is there for RETURNING id: prove it.
        let returning = format!("{} RETURNING id", insert.trim().trim_end_matches(';'));
        let id: uuid::Uuid = sqlx::query_scalar(&returning)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("documented onboarding fails: {e}\n{returning}"));
        sqlx::query("NOTIFY sspm_wakeup")
            .execute(&mut conn)
            .await
            .unwrap();
        // The onboarding role stays away from tokens it did not write.
        assert_eq!(
            sqlstate_of(&mut conn, "SELECT token_ciphertext FROM sspm.instances").await,
            "42501"
        );
        assert!(!id.is_nil());
        conn.close().await.unwrap();
    })
    .await;

    let row = sqlx::query(
        "SELECT name, region, token_ref, token_ciphertext IS NULL AS unsealed, allowed_domains, \
                schedule, status, next_scan_at <= now() AS due, workspace_id \
         FROM sspm.instances",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("name"), "acme");
    assert_eq!(row.get::<String, _>("region"), "eu");
    assert_eq!(
        row.get::<String, _>("token_ref"),
        "file:/run/secrets/intercom/acme"
    );
    assert!(row.get::<bool, _>("unsealed"));
    assert_eq!(row.get::<Vec<String>, _>("allowed_domains"), ["acme.com"]);
    assert_eq!(
        row.get::<Option<String>, _>("schedule").as_deref(),
        Some("6h")
    );
    assert_eq!(row.get::<String, _>("status"), "pending");
    assert!(row.get::<bool, _>("due"), "due at once");
    assert_eq!(row.get::<Option<String>, _>("workspace_id"), None);
}

//! Teammate-domain findings and the posture score on messy real-world data
//! (scenarios/real-world.json): a real scan against the simulator and Postgres.

use std::collections::BTreeSet;

use intercom_sim::{Scenario, Simulator};
use intercom_sspm::crypto::Keyring;
use intercom_sspm::db::instances::{self, NewInstance};
use intercom_sspm::db::scans::Trigger;
use intercom_sspm::region::Region;
use intercom_sspm::scan::{ScanOutcome, Scanner};
use intercom_sspm::status::CheckStatus;
use intercom_sspm::token::TokenSource;
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{self, cli, db, sim as sim_support, TestKey};

const UMBRELLA_TOKEN: &str = "sim_umbrella_us_5c1e9b7a3d2f4e68";
const INITECH_TOKEN: &str = "sim_initech_eu_0a9b8c7d6e5f4a3b";

const DOMAIN_CHECKS: [&str; 4] = [
    "admin_disposable_email",
    "admin_personal_email_domain",
    "admin_lookalike_domain",
    "admin_external_domain",
];

async fn world() -> Simulator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/real-world.json");
    let scenario = Scenario::load(std::path::Path::new(path)).expect("scenario loads");
    Simulator::start(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

fn setup(pool: &PgPool, sim: &Simulator) -> (Scanner, Keyring) {
    let key = TestKey::generate();
    (
        support::scanner(pool, support::settings(Some(sim), &[]), key.ring()),
        key.ring(),
    )
}

async fn onboard(
    pool: &PgPool,
    ring: &Keyring,
    (name, region, workspace, token): (&str, Region, &str, &str),
    allowed: &[String],
) -> instances::Instance {
    let id = Uuid::new_v4();
    let sealed =
        TokenSource::Sealed(ring.seal(&SecretString::from(token.to_string()), id.as_bytes()));
    instances::insert(
        pool,
        &NewInstance {
            id,
            name,
            region,
            workspace_id: workspace,
            workspace_name: None,
            token: &sealed,
            schedule: None,
            allowed_domains: allowed,
        },
    )
    .await
    .unwrap()
}

async fn domain_findings(pool: &PgPool, instance: Uuid) -> BTreeSet<(String, String, String)> {
    sqlx::query_as::<_, (String, String, String)>(
        "SELECT check_id, resource, severity FROM sspm.findings
          WHERE instance_id = $1 AND status = 'open' AND check_id = ANY($2)",
    )
    .bind(instance)
    .bind(DOMAIN_CHECKS.map(String::from).to_vec())
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn consumer_disposable_and_lookalike_teammates_get_their_own_findings(pool: PgPool) {
    let sim = world().await;
    let (scanner, ring) = setup(&pool, &sim);
    let allowed = vec!["umbrella.com".to_string()];
    let umbrella = onboard(
        &pool,
        &ring,
        ("umbrella", Region::Us, "umbrella01", UMBRELLA_TOKEN),
        &allowed,
    )
    .await;
    let report = scanner
        .scan(&umbrella, Trigger::Manual, None)
        .await
        .unwrap();
    assert_eq!(report.status, ScanOutcome::Succeeded, "{:?}", report.error);

    let row = |check: &str, admin: &str, severity: &str| {
        (
            check.to_string(),
            format!("admin:{admin}"),
            severity.to_string(),
        )
    };
    let expected: BTreeSet<_> = [
        row("admin_personal_email_domain", "991300003", "high"), // jim@yahoo.fr
        row("admin_personal_email_domain", "991300004", "high"), // Max.Mueller@Outlook.de
        row("admin_disposable_email", "991300005", "high"),      // mailinator.com
        row("admin_lookalike_domain", "991300006", "high"),      // umbrella-corp.com
        row("admin_lookalike_domain", "991300007", "high"),      // umbrella.com.evil.io
        // The one genuinely external teammate: medium, and the only external finding.
        row("admin_external_domain", "991300008", "medium"),
    ]
    .into_iter()
    .collect();
    assert_eq!(domain_findings(&pool, umbrella.id).await, expected);

    let evidence: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT evidence FROM sspm.findings
          WHERE instance_id = $1 AND check_id = 'admin_lookalike_domain' ORDER BY resource",
    )
    .bind(umbrella.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    for e in &evidence {
        assert_eq!(e["imitates"], "umbrella.com", "{e}");
    }
    assert_eq!(evidence[0]["rule"], "hyphen_or_digit");
    assert_eq!(evidence[1]["rule"], "embedded");
    let outlook: serde_json::Value =
        sqlx::query_scalar("SELECT evidence FROM sspm.findings WHERE resource = 'admin:991300004'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(outlook["domain"], "outlook.de", "normalized: {outlook}");
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_read_admins_token_does_not_lower_a_healthy_workspaces_score(pool: PgPool) {
    let sim = world().await;
    let (scanner, ring) = setup(&pool, &sim);
    // No allowed domains: the default is the owner's registrable domain, initech.de, which
    // covers berlin.initech.de.
    let initech = onboard(
        &pool,
        &ring,
        ("initech", Region::Eu, "initech01", INITECH_TOKEN),
        &[],
    )
    .await;
    let report = scanner.scan(&initech, Trigger::Manual, None).await.unwrap();
    assert_eq!(report.status, ScanOutcome::Succeeded, "{:?}", report.error);

    let access = report
        .checks
        .iter()
        .find(|c| c.check_id == "activity_log_access")
        .unwrap();
    assert_eq!(
        access.status,
        CheckStatus::Fail,
        "the missing scope is still reported"
    );
    let open: Vec<(String, String)> = sqlx::query_as(
        "SELECT check_id, severity FROM sspm.findings WHERE instance_id = $1 AND status = 'open'",
    )
    .bind(initech.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        open,
        [("activity_log_access".to_string(), "info".to_string())]
    );
    assert_eq!(report.score, Some(100.0), "an info finding weighs nothing");
    let coverage = report.coverage.unwrap();
    assert!(
        coverage < 0.8,
        "coverage shows what is not evaluated: {coverage}"
    );
    sim.shutdown().await;
}

/// Findings stored before the severity change are migrated to `info` by
/// migrations/20261201000030_checks_data.sql: re-run its statement on an old-style row.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn the_migration_moves_old_activity_log_access_findings_to_info(pool: PgPool) {
    let sim = world().await;
    let (scanner, ring) = setup(&pool, &sim);
    let initech = onboard(
        &pool,
        &ring,
        ("initech", Region::Eu, "initech01", INITECH_TOKEN),
        &[],
    )
    .await;
    scanner.scan(&initech, Trigger::Manual, None).await.unwrap();
    sqlx::query(
        "UPDATE sspm.finding_rows SET severity = 'medium' WHERE check_id = 'activity_log_access'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let sql = include_str!("../../migrations/20261201000030_checks_data.sql");
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    let severity: String = sqlx::query_scalar(
        "SELECT severity FROM sspm.findings WHERE check_id = 'activity_log_access'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(severity, "info");
    sim.shutdown().await;
}

/// `instance add` and `instance set-domains` share one validation: a bare public suffix is
/// refused with a hint and nothing changes; a consumer domain is stored with a warning; an
/// internationalised domain is stored as punycode.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn allowed_domains_refuse_public_suffixes_and_warn_about_consumer_domains(pool: PgPool) {
    let sim = world().await;
    let (_, ring) = setup(&pool, &sim);
    let key = TestKey::generate().b64;
    let umbrella = onboard(
        &pool,
        &ring,
        ("umbrella", Region::Us, "umbrella01", UMBRELLA_TOKEN),
        &["umbrella.com".to_string()],
    )
    .await;
    let mut env = sim_support::sim_env(Some(&sim));
    env.push(("DATABASE_URL".into(), db::database_url(&pool)));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key));
    let stored = || async {
        sqlx::query_scalar::<_, Vec<String>>(
            "SELECT allowed_domains FROM sspm.instances WHERE id = $1",
        )
        .bind(umbrella.id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    let out = cli::run_cli(
        &["instance", "set-domains", "umbrella", "co.uk"],
        &env,
        None,
    )
    .await;
    let (_, stderr) = cli::text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("\"co.uk\" is a public suffix"), "{stderr}");
    assert_eq!(stored().await, ["umbrella.com"], "nothing changed");

    let out = cli::run_cli(
        &[
            "instance",
            "set-domains",
            "umbrella",
            "Umbrella.com,gmail.com,münchen.de",
        ],
        &env,
        None,
    )
    .await;
    let (stdout, stderr) = cli::text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("warning: gmail.com is a consumer mail domain"),
        "{stderr}"
    );
    assert_eq!(
        stored().await,
        ["umbrella.com", "gmail.com", "xn--mnchen-3ya.de"]
    );

    let out = cli::run_cli(
        &[
            "instance",
            "add",
            "--name",
            "other",
            "--region",
            "us",
            "--token-stdin",
            "--allowed-domains",
            "com",
        ],
        &env,
        Some(UMBRELLA_TOKEN),
    )
    .await;
    let (_, stderr) = cli::text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("\"com\" is a public suffix"), "{stderr}");
    sim.shutdown().await;
}

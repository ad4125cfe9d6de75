//! Onboarding through the real binary and the library: the token is validated against its
//! region before anything is stored, stored sealed, and never found in clear.

use serde_json::json;
use sqlx::PgPool;

use crate::support::cli::{self, run_cli, text};
use crate::support::{count, db, sim, TestKey};

const US_TOKEN: &str = "tok_us_acme_5f1e0c9a2b7d4e8f";
const EU_TOKEN: &str = "tok_eu_globex_77aa19c3d2e0b6f4";

async fn two_region_sim() -> intercom_sim::Simulator {
    sim::start_json(json!({
        "workspaces": [
            sim::workspace_json("acme", "us", US_TOKEN, &["read_admins"]),
            sim::workspace_json("globex", "eu", EU_TOKEN, &["read_admins"]),
        ]
    }))
    .await
}

fn cli_env(
    pool: &PgPool,
    sim: Option<&intercom_sim::Simulator>,
    key: &str,
) -> Vec<(String, String)> {
    let mut env = cli::env(pool, sim, key);
    env.push(("SSPM__LOG__LEVEL".into(), "trace".into()));
    env
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn add_stores_sealed_token_that_never_appears_in_clear(pool: PgPool) {
    let sim = two_region_sim().await;
    let key = TestKey::generate().b64;
    let env = cli_env(&pool, Some(&sim), &key);
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-stdin",
        ],
        &env,
        Some(&format!("{US_TOKEN}\n")),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("acme") && stdout.contains("acme Inc"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(US_TOKEN) && !stderr.contains(US_TOKEN),
        "token printed"
    );

    let row: (String, String, Option<Vec<u8>>, Option<String>) = sqlx::query_as(
        "SELECT workspace_id, region, token_ciphertext, token_key_id FROM sspm.instances WHERE name = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.0, "acme");
    assert_eq!(row.1, "us");
    assert!(row.2.is_some() && row.3.is_some(), "sealed columns filled");

    // Nowhere in any table, and not in a pg_dump of the database either.
    let all = db::all_table_text(&pool).await;
    assert!(all.contains("acme"), "the scan of tables saw the row");
    assert!(!all.contains(US_TOKEN));
    let dump = std::process::Command::new("pg_dump")
        .arg(db::database_url(&pool))
        .output()
        .expect("pg_dump is installed with the Postgres client tools");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("CREATE TABLE sspm.instances"));
    assert!(!dump.contains(US_TOKEN), "plaintext token in pg_dump");

    // The sealed token opens again with the key, bound to this row.
    let (instance,): (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM sspm.instances WHERE name = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let source = intercom_sspm::db::instances::token_source(&pool, instance)
        .await
        .unwrap()
        .unwrap();
    let ring = intercom_sspm::crypto::Keyring::new(
        intercom_sspm::crypto::TokenKey::from_base64(&key, "test").unwrap(),
        vec![],
    );
    use secrecy::ExposeSecret;
    assert_eq!(
        source
            .reveal(Some(&ring), instance.as_bytes())
            .unwrap()
            .expose_secret(),
        US_TOKEN
    );
    let other = uuid::Uuid::new_v4();
    assert!(
        source.reveal(Some(&ring), other.as_bytes()).is_err(),
        "bound to its row"
    );
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn wrong_region_is_named_and_nothing_is_stored(pool: PgPool) {
    let sim = two_region_sim().await;
    let key = TestKey::generate().b64;
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "globex",
            "--region",
            "us",
            "--token-stdin",
        ],
        &cli_env(&pool, Some(&sim), &key),
        Some(EU_TOKEN),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("--region eu"), "stderr: {stderr}");
    assert!(!stderr.contains(EU_TOKEN) && !stdout.contains(EU_TOKEN));
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn bad_token_is_rejected_and_nothing_is_stored(pool: PgPool) {
    let sim = two_region_sim().await;
    let key = TestKey::generate().b64;
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-stdin",
        ],
        &cli_env(&pool, Some(&sim), &key),
        Some("tok_not_a_real_token_123"),
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("rejected") && stderr.contains("Regenerate"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("tok_not_a_real_token_123"));
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn unreachable_region_is_a_clear_error_and_nothing_is_stored(pool: PgPool) {
    let key = TestKey::generate().b64;
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "eu",
            "--token-stdin",
        ],
        &cli_env(&pool, None, &key),
        Some(US_TOKEN),
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot validate the token against region eu"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1:9"),
        "names the URL it tried: {stderr}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn missing_key_empty_token_and_bad_input_fail_before_storing(pool: PgPool) {
    let sim = two_region_sim().await;
    let mut env = sim::sim_env(Some(&sim));
    env.push(("DATABASE_URL".into(), db::database_url(&pool)));
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-stdin",
        ],
        &env,
        Some(US_TOKEN),
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no token key configured") && stderr.contains("keygen"),
        "{stderr}"
    );

    let key = TestKey::generate().b64;
    let env = cli_env(&pool, Some(&sim), &key);
    for (args, input, expect) in [
        (
            vec!["--name", "acme", "--region", "us", "--token-stdin"],
            "  \n",
            "empty",
        ),
        (
            vec!["--name", "acme", "--region", "ca", "--token-stdin"],
            US_TOKEN,
            "unknown region",
        ),
        (
            vec!["--name", "bad name", "--region", "us", "--token-stdin"],
            US_TOKEN,
            "invalid instance name",
        ),
        (
            vec![
                "--name",
                "acme",
                "--region",
                "us",
                "--token-stdin",
                "--schedule",
                "61 * * * *",
            ],
            US_TOKEN,
            "--schedule",
        ),
        (
            vec![
                "--name",
                "acme",
                "--region",
                "us",
                "--token-stdin",
                "--schedule",
                "0 3 * * *",
                "--timezone",
                "Mars/Base",
            ],
            US_TOKEN,
            "unknown time zone",
        ),
    ] {
        let mut full = vec!["instance", "add"];
        full.extend(args);
        let out = run_cli(&full, &env, Some(input)).await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{full:?} should fail");
        assert!(stderr.contains(expect), "{full:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn duplicates_are_clear_errors(pool: PgPool) {
    let sim = two_region_sim().await;
    let key = TestKey::generate().b64;
    let env = cli_env(&pool, Some(&sim), &key);
    let add = |name: &'static str| {
        let env = env.clone();
        async move {
            run_cli(
                &[
                    "instance",
                    "add",
                    "--name",
                    name,
                    "--region",
                    "us",
                    "--token-stdin",
                ],
                &env,
                Some(US_TOKEN),
            )
            .await
        }
    };
    assert!(add("acme").await.status.success());
    let (_, stderr) = text(&add("ACME").await);
    assert!(stderr.contains("already exists"), "{stderr}");
    let (_, stderr) = text(&add("acme-two").await);
    assert!(
        stderr.contains("already onboarded as instance \"acme\""),
        "{stderr}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 1);
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn token_reference_is_validated_then_stored_as_reference(pool: PgPool) {
    let sim = two_region_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.token");
    std::fs::write(&path, format!("{US_TOKEN}\n")).unwrap();
    // No token key is needed for references.
    let mut env = sim::sim_env(Some(&sim));
    env.push(("DATABASE_URL".into(), db::database_url(&pool)));
    let reference = format!("file:{}", path.display());
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-ref",
            &reference,
        ],
        &env,
        None,
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let stored: Option<String> =
        sqlx::query_scalar("SELECT token_ref FROM sspm.instances WHERE name = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some(reference.as_str()));
    assert!(!db::all_table_text(&pool).await.contains(US_TOKEN));

    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "b",
            "--region",
            "us",
            "--token-ref",
            "env:SSPM_UNSET_TEST_VAR",
        ],
        &env,
        None,
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("env:SSPM_UNSET_TEST_VAR") && stderr.contains("not set"),
        "{stderr}"
    );
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn list_show_disable_schedule_and_remove(pool: PgPool) {
    let sim = two_region_sim().await;
    let key = TestKey::generate().b64;
    let env = cli_env(&pool, Some(&sim), &key);
    assert!(run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-stdin"
        ],
        &env,
        Some(US_TOKEN)
    )
    .await
    .status
    .success());
    let out = run_cli(&["instance", "list", "--format", "json"], &env, None).await;
    let (stdout, _) = text(&out);
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list[0]["name"], "acme");
    assert_eq!(list[0]["token_kind"], "sealed");
    assert!(!stdout.contains(US_TOKEN));
    assert!(run_cli(&["instance", "disable", "acme"], &env, None)
        .await
        .status
        .success());
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.instances WHERE NOT enabled"
        )
        .await,
        1
    );
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
    assert!(out.status.success(), "{:?}", text(&out));
    let schedule: Option<String> = sqlx::query_scalar("SELECT schedule FROM sspm.instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(schedule.as_deref(), Some("CRON_TZ=Europe/Berlin 0 3 * * *"));
    let out = run_cli(&["instance", "remove", "acme"], &env, None).await;
    assert!(!out.status.success(), "remove needs --yes");
    assert!(
        run_cli(&["instance", "remove", "acme", "--yes"], &env, None)
            .await
            .status
            .success()
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn token_reference_to_the_scanners_own_key_is_refused_before_any_request(pool: PgPool) {
    let sim = two_region_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("token.key");
    let key = TestKey::generate().b64;
    std::fs::write(&key_file, &key).unwrap();
    let mut env = sim::sim_env(Some(&sim));
    env.push(("DATABASE_URL".into(), db::database_url(&pool)));
    env.push((
        "SSPM__SECURITY__TOKEN_KEY_FILE".into(),
        key_file.display().to_string(),
    ));
    let requests = sim.request_count();
    let reference = format!("file:{}", key_file.display());
    for args in [
        vec![
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-ref",
            reference.as_str(),
        ],
        vec![
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-ref",
            "env:SSPM__SECURITY__TOKEN_KEY",
        ],
    ] {
        let out = run_cli(&args, &env, None).await;
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains("scanner's own configuration"), "{stderr}");
        assert!(!stderr.contains(&key) && !stdout.contains(&key));
    }
    assert_eq!(
        sim.request_count(),
        requests,
        "the key was never sent anywhere"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn onboarding_says_when_it_retries(pool: PgPool) {
    let w = crate::support::World::builder(&pool)
        .workspace(sim::workspace_json(
            "acme",
            "us",
            US_TOKEN,
            &["read_admins"],
        ))
        .build()
        .await;
    // Two 503s, then the answer: with 3 retries the third attempt succeeds.
    w.set_faults(
        "acme",
        json!({ "endpoints": ["/me"], "server_error": { "next": 2, "status": 503 } }),
    );
    let mut env = w.cli_env();
    env.push(("SSPM__INTERCOM__MAX_RETRIES".into(), "3".into()));
    let add = [
        "instance",
        "add",
        "--name",
        "acme",
        "--region",
        "us",
        "--token-stdin",
    ];
    let out = run_cli(&add, &env, Some(US_TOKEN)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.contains("retrying")).collect();
    assert_eq!(progress.len(), 2, "one line per retry: {stderr}");
    assert!(
        progress[0].starts_with("Intercom answered 503")
            && progress[0].contains("/me")
            && progress[0].contains(" ms (attempt")
            && progress[0].ends_with("(attempt 2 of 4)"),
        "{stderr}"
    );
    assert!(progress[1].ends_with("(attempt 3 of 4)"), "{stderr}");
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 1);

    // --quiet keeps stderr to errors.
    w.set_faults(
        "acme",
        json!({ "endpoints": ["/me"], "server_error": { "next": 1, "status": 503 } }),
    );
    let out = run_cli(
        &["--quiet", "instance", "set-token", "acme", "--token-stdin"],
        &env,
        Some(US_TOKEN),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    w.sim.shutdown().await;
}

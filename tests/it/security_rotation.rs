//! `intercom-sspm rotate-key` through the real binary: every sealed token moves to the
//! current key in one transaction, token references are untouched, the old key can then be
//! dropped; any token that cannot be opened aborts the run with every row unchanged.

use intercom_sspm::crypto::{CryptoError, Keyring};
use intercom_sspm::db::instances::{self, Instance};
use intercom_sspm::region::Region;
use intercom_sspm::token::{TokenError, TokenRef, TokenSource};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::cli::{run_cli, text};
use crate::support::{db, sim, Onboard, TestKey};

const ACME: &str = "tok_rotate_acme_us_1f2e3d4c5b6a";
const GLOBEX: &str = "tok_rotate_globex_eu_0a9b8c7d6e5f";
const INITECH: &str = "tok_rotate_initech_au_99887766";

/// An instance of workspace `ws` with `token` sealed under `ring`.
async fn sealed(
    pool: &PgPool,
    ring: &Keyring,
    name: &str,
    region: Region,
    ws: &str,
    token: &str,
) -> Instance {
    let spec = Onboard::new(name).region(region).workspace(ws);
    db::onboard(pool, ring, &spec, token).await
}

/// Every token column and `updated_at` of every instance, in a stable order.
type Row = (
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
);
async fn token_rows(pool: &PgPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT name, token_ciphertext, token_nonce, token_key_id, token_ref, updated_at
         FROM sspm.instances ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn env(
    pool: &PgPool,
    sim: Option<&intercom_sim::Simulator>,
    current: &TestKey,
    previous: &[&TestKey],
) -> Vec<(String, String)> {
    let mut env = sim::sim_env(sim);
    env.push(("DATABASE_URL".into(), db::database_url(pool)));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), current.b64.clone()));
    if !previous.is_empty() {
        // A comma-separated list, as a container or a systemd unit would set it.
        let list: Vec<&str> = previous.iter().map(|k| k.b64.as_str()).collect();
        env.push(("SSPM__SECURITY__PREVIOUS_TOKEN_KEYS".into(), list.join(",")));
    }
    env
}

#[track_caller]
fn assert_no_secret(text: &str, keys: &[&TestKey]) {
    for t in [ACME, GLOBEX, INITECH] {
        assert!(!text.contains(t), "token in output: {text}");
    }
    for k in keys {
        assert!(!text.contains(&k.b64), "key in output: {text}");
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn rotation_reseals_every_token_so_the_old_key_can_be_dropped(pool: PgPool) {
    let sim = sim::start_json(json!({ "workspaces": [
        sim::workspace_json("acme", "us", ACME, &["read_admins"]),
        sim::workspace_json("globex", "eu", GLOBEX, &["read_admins"]),
        sim::workspace_json("initech", "au", INITECH, &["read_admins"]),
    ]}))
    .await;
    let (a, b) = (TestKey::generate(), TestKey::generate());
    let ring_a = a.ring();
    let acme = sealed(&pool, &ring_a, "acme", Region::Us, "acme", ACME).await;
    let globex = sealed(&pool, &ring_a, "globex", Region::Eu, "globex", GLOBEX).await;
    // A token reference holds no ciphertext: rotation must leave the row alone.
    let initech_id = Uuid::new_v4();
    db::insert(
        &pool,
        &Onboard::new("initech").region(Region::Au),
        initech_id,
        &TokenSource::Reference(TokenRef::Env("INITECH_TOKEN".into())),
    )
    .await;
    let before = token_rows(&pool).await;

    // B is current, A is still accepted for opening.
    let rotating = env(&pool, Some(&sim), &b, &[&a]);
    let out = run_cli(&["rotate-key", "--dry-run"], &rotating, None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("would re-seal 2 token(s)"), "{stdout}");
    assert_eq!(token_rows(&pool).await, before, "a dry run writes nothing");

    let out = run_cli(&["rotate-key"], &rotating, None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("re-sealed 2 token(s) under key id {}", b.id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("key id {} is no longer referenced", a.id))
            && stdout.contains("remove it from security.previous_token_keys"),
        "{stdout}"
    );
    assert_no_secret(&format!("{stdout}{stderr}"), &[&a, &b]);

    let after = token_rows(&pool).await;
    for (old, new) in before.iter().zip(&after) {
        if old.0 == "initech" {
            assert_eq!(old, new, "the token reference row is untouched");
            continue;
        }
        assert_eq!(new.3.as_deref(), Some(b.id.as_str()), "{} under B", new.0);
        assert_ne!(old.1, new.1, "{}: new ciphertext", new.0);
        assert_ne!(old.2, new.2, "{}: fresh nonce", new.0);
    }

    // A is gone from the configuration: B alone opens every token, A opens none.
    let ring_b = b.ring();
    for (inst, token) in [(&acme, ACME), (&globex, GLOBEX)] {
        let source = instances::token_source(&pool, inst.id)
            .await
            .unwrap()
            .unwrap();
        let opened = source.reveal(Some(&ring_b), inst.id.as_bytes()).unwrap();
        assert_eq!(opened.expose_secret(), token);
        assert!(matches!(
            source.reveal(Some(&ring_a), inst.id.as_bytes()),
            Err(TokenError::Crypto(CryptoError::UnknownKeyId(_)))
        ));
    }
    let only_b = env(&pool, Some(&sim), &b, &[]);
    for name in ["acme", "globex"] {
        let out = run_cli(&["scan", name], &only_b, None).await;
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "scan {name} with only the new key: {stdout}{stderr}"
        );
    }

    // Idempotent: a second run has nothing left to move.
    let out = run_cli(&["rotate-key"], &only_b, None).await;
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("re-sealed 0 token(s)") && stdout.contains("2 already used it"),
        "{stdout}"
    );
    sim.shutdown().await;
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_token_that_cannot_be_opened_aborts_the_rotation_with_no_row_changed(pool: PgPool) {
    let (a, b, lost) = (
        TestKey::generate(),
        TestKey::generate(),
        TestKey::generate(),
    );
    let ring_a = a.ring();
    // Sorted by name: aaa and bbb are re-sealed inside the transaction before mmm fails,
    // so only a real rollback leaves them as they were.
    sealed(&pool, &ring_a, "aaa", Region::Us, "w1", ACME).await;
    sealed(&pool, &ring_a, "bbb", Region::Us, "w2", GLOBEX).await;
    let mmm = sealed(&pool, &lost.ring(), "mmm", Region::Us, "w3", INITECH).await;
    sealed(&pool, &ring_a, "zzz", Region::Us, "w4", ACME).await;
    let before = token_rows(&pool).await;

    // The previous key given in a config file this time, as on a systemd host.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sspm.toml");
    std::fs::write(
        &config,
        format!("[security]\nprevious_token_keys = [\"{}\"]\n", a.b64),
    )
    .unwrap();
    let env = env(&pool, None, &b, &[]);
    let args = ["--config", config.to_str().unwrap(), "rotate-key"];

    let out = run_cli(&args, &env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("\"mmm\"")
            && stderr.contains(&mmm.id.to_string())
            && stderr.contains(&lost.id),
        "names the instance and the missing key id: {stderr}"
    );
    assert!(stderr.contains("Nothing was changed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_no_secret(&format!("{stdout}{stderr}"), &[&a, &b, &lost]);
    assert_eq!(token_rows(&pool).await, before, "every row unchanged");

    // A row altered in place (another row's ciphertext, bound to another id) fails the
    // authentication check: same outcome.
    sqlx::query(
        "UPDATE sspm.instances SET (token_ciphertext, token_nonce, token_key_id) =
           (SELECT token_ciphertext, token_nonce, token_key_id FROM sspm.instances WHERE name = 'aaa')
         WHERE name = 'mmm'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = token_rows(&pool).await;
    let out = run_cli(&args, &env, None).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("\"mmm\"") && stderr.contains("altered"),
        "{stderr}"
    );
    assert_eq!(token_rows(&pool).await, before, "every row unchanged");

    // No key configured at all: a clear message before touching anything.
    let mut no_key = sim::sim_env(None);
    no_key.push(("DATABASE_URL".into(), db::database_url(&pool)));
    let out = run_cli(&["rotate-key"], &no_key, None).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no token key configured"), "{stderr}");
    assert_eq!(token_rows(&pool).await, before);
}

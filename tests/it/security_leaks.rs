//! Secrets never leak: the access token and the token key (base64, and hex as pg_dump
//! prints bytea) are absent from every CLI command's stdout and stderr at trace-level JSON
//! logging, from the HTTP client's own trace logs, from error rows, from a pg_dump of the
//! database, and from the Debug form (and so panic messages) of every type that holds them.

use intercom_sspm::status::InstanceStatus;
use std::process::Output;

use intercom_sspm::config::{Settings, Sources};
use intercom_sspm::crypto::{Keyring, TokenKey};
use intercom_sspm::intercom::IntercomClient;
use intercom_sspm::region::Region;
use intercom_sspm::token::{TokenRef, TokenSource};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgPool;

use crate::support::cli::{self, run_cli, text};
use crate::support::{count, db, sim, TestKey};

const TOKEN: &str = "tok_leakcheck_acme_4e5f6a7b8c9d";
const TOKEN_2: &str = "tok_leakcheck_acme_second_0a1b2c";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every form a secret could take in text we inspect.
struct Secrets {
    forms: Vec<(String, String)>,
}

impl Secrets {
    fn new(key_b64: &str) -> Self {
        use base64::Engine;
        let key_raw = base64::engine::general_purpose::STANDARD
            .decode(key_b64)
            .unwrap();
        let mut forms = vec![("token key (base64)".to_string(), key_b64.to_string())];
        forms.push(("token key (hex)".into(), hex(&key_raw)));
        for t in [TOKEN, TOKEN_2] {
            forms.push((format!("token {t}"), t.to_string()));
            forms.push((format!("token {t} (hex)"), hex(t.as_bytes())));
        }
        Self { forms }
    }

    #[track_caller]
    fn assert_absent(&self, what: &str, haystack: &str) {
        for (name, value) in &self.forms {
            assert!(
                !haystack.contains(value.as_str()),
                "{name} leaked in {what}:\n{haystack}"
            );
        }
    }
}

fn scenario() -> serde_json::Value {
    // read_tags is an excess scope: it produces a finding to put an exception on.
    let mut w = sim::workspace_json(
        "acme",
        "us",
        TOKEN,
        &["read_admins", "read_admin_activity_logs", "read_tags"],
    );
    w["tokens"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "token": TOKEN_2, "scopes": ["read_admins"] }));
    json!({ "workspaces": [w] })
}

/// Runs the checks common to every command; returns (stdout, stderr).
#[track_caller]
fn checked(secrets: &Secrets, out: &Output, args: &[&str], must_succeed: bool) -> (String, String) {
    let (stdout, stderr) = text(out);
    if must_succeed {
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    } else {
        assert!(!out.status.success(), "{args:?} should fail: {stdout}");
    }
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    secrets.assert_absent(&format!("stdout of {args:?}"), &stdout);
    secrets.assert_absent(&format!("stderr of {args:?}"), &stderr);
    (stdout, stderr)
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn no_cli_command_prints_a_secret_even_at_trace_level(pool: PgPool) {
    let sim = sim::start_json(scenario()).await;
    let key = TestKey::generate().b64;
    let secrets = Secrets::new(&key);
    let mut env = cli::env(&pool, Some(&sim), &key);
    env.push(("SSPM__LOG__LEVEL".into(), "trace".into()));
    env.push(("SSPM__LOG__FORMAT".into(), "json".into()));

    let mut transcript = String::new();
    macro_rules! cli {
        ($args:expr) => {
            cli!($args, None, true)
        };
        ($args:expr, $stdin:expr, $ok:expr) => {{
            let args: &[&str] = $args;
            let out = run_cli(args, &env, $stdin).await;
            let (stdout, stderr) = checked(&secrets, &out, args, $ok);
            transcript.push_str(&stderr);
            stdout
        }};
    }

    cli!(&["migrate"]);
    cli!(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-stdin"
        ],
        Some(TOKEN),
        true
    );
    // Failing commands quote their input back: still no secret.
    cli!(
        &[
            "instance",
            "add",
            "--name",
            "acme2",
            "--region",
            "eu",
            "--token-stdin"
        ],
        Some(TOKEN),
        false
    );
    for fmt in ["table", "json"] {
        cli!(&["instance", "list", "--format", fmt]);
        cli!(&["instance", "show", "acme", "--format", fmt]);
        cli!(&["checks", "--format", fmt]);
    }
    cli!(&["scan", "acme"]);
    cli!(&["scan", "acme", "--format", "json"]);
    cli!(&["scan", "acme", "--queue"]);
    for fmt in ["table", "json", "csv", "ocsf"] {
        cli!(&["findings", "--status", "all", "--format", fmt]);
    }
    let added = cli!(&[
        "exception",
        "add",
        "--instance",
        "acme",
        "--check",
        "token_least_privilege",
        "--resource",
        "workspace",
        "--reason",
        "accepted for the test",
        "--expires",
        "2999-01-01",
    ]);
    assert!(added.contains("1 finding(s) muted"), "{added}");
    cli!(&["exception", "list"]);
    cli!(&["exception", "list", "--format", "json"]);
    cli!(
        &["instance", "set-token", "acme", "--token-stdin"],
        Some(TOKEN_2),
        true
    );
    cli!(&["instance", "set-schedule", "acme", "12h"]);
    cli!(&["instance", "disable", "acme"]);
    cli!(&["instance", "enable", "acme"]);
    cli!(&["scan", "acme"]);
    cli!(&["rotate-key"]);
    // The HTTP stack's own trace logs (reqwest, hyper, rustls...): RUST_LOG wins over
    // log.level and names no quiet targets, so every dependency logs at trace.
    let mut trace_env = env.clone();
    trace_env.push(("RUST_LOG".into(), "trace".into()));
    let out = run_cli(&["scan", "acme"], &trace_env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reqwest"),
        "the HTTP client's trace logs were captured"
    );
    assert!(
        !stderr.contains("Bearer tok"),
        "Authorization header in trace logs"
    );
    secrets.assert_absent("RUST_LOG=trace scan", &format!("{stdout}{stderr}"));

    // A failure path: the token is revoked; its error lands in scans.error and
    // instances.status_detail.
    sim.scenario_handle().revoke_token(TOKEN_2).unwrap();
    let failed = cli!(&["scan", "acme"], None, false);
    assert!(failed.contains("failed"), "{failed}");
    let detail: String = sqlx::query_scalar("SELECT status_detail FROM sspm.instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(detail.contains("token rejected"), "{detail}");
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE error IS NOT NULL"
        )
        .await
            >= 1
    );

    // Proof that trace-level JSON logging was on and the logs were searched.
    assert!(
        transcript.contains(r#""level":"TRACE""#),
        "trace logging was on"
    );
    assert!(transcript.contains("scan succeeded"), "the scan logged");

    // keygen prints its own new key on stdout, by design; it must not reach stderr, and the
    // configured key and tokens must appear in neither.
    let out = run_cli(&["keygen"], &env, None).await;
    let (new_key, stderr) = text(&out);
    assert!(out.status.success());
    assert!(!stderr.contains(new_key.trim()), "{stderr}");
    secrets.assert_absent("keygen", &format!("{new_key}{stderr}"));

    // Every row of every table, and a pg_dump of the whole database.
    let all = db::all_table_text(&pool).await;
    assert!(all.contains("accepted for the test"), "the rows were read");
    secrets.assert_absent("table rows", &all);
    let dump = tokio::task::spawn_blocking({
        let url = db::database_url(&pool);
        move || std::process::Command::new("pg_dump").arg(url).output()
    })
    .await
    .unwrap()
    .expect("pg_dump is installed");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("COPY sspm.instances"), "a data dump");
    assert!(
        dump.contains("\\\\x"),
        "bytea columns are in the dump (as hex)"
    );
    secrets.assert_absent("pg_dump", &dump);
    sim.shutdown().await;
}

#[test]
fn debug_forms_and_panic_messages_redact_every_secret() {
    let key = TokenKey::generate();
    let key_b64 = key.to_base64().expose_secret().to_string();
    let old = TokenKey::generate().to_base64().expose_secret().to_string();
    let settings = Settings::load(&Sources {
        env: vec![
            (
                "DATABASE_URL".into(),
                "postgres://u:dbpassw0rd@db/sspm".into(),
            ),
            ("SSPM__SECURITY__TOKEN_KEY".into(), key_b64.clone()),
            ("SSPM__SECURITY__PREVIOUS_TOKEN_KEYS".into(), old.clone()),
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(settings.security.previous_token_keys.len(), 1);
    let ring = Keyring::from_settings(&settings.security).unwrap();
    let token = SecretString::from(TOKEN);
    let sealed = ring.seal(&token, b"row");
    let session = IntercomClient::new(&settings.intercom)
        .unwrap()
        .session(Region::Us, token.clone());
    let reference = TokenSource::Reference(TokenRef::Env("ACME_TOKEN".into()));
    let instance = intercom_sspm::db::instances::Instance {
        id: uuid::Uuid::nil(),
        name: "acme".into(),
        region: Region::Us,
        workspace_id: None,
        workspace_name: None,
        enabled: true,
        schedule: None,
        next_scan_at: chrono::Utc::now(),
        status: InstanceStatus::Ok,
        status_detail: None,
        last_scan_at: None,
        created_at: chrono::Utc::now(),
        token_kind: "sealed".into(),
        token_key_id: Some(sealed.key_id.clone()),
        token_ref: None,
        allowed_domains: vec![],
    };
    let shown = [
        ("Settings", format!("{settings:?}")),
        ("SecuritySettings", format!("{:#?}", settings.security)),
        ("Keyring", format!("{ring:?}")),
        ("TokenKey", format!("{key:?}")),
        ("SecretString", format!("{token:?}")),
        ("Session", format!("{session:?}")),
        (
            "TokenSource::Sealed",
            format!("{:?}", TokenSource::Sealed(sealed.clone())),
        ),
        ("TokenSource::Reference", format!("{reference:?}")),
        ("Instance", format!("{instance:?}")),
    ];
    let ct_hex = hex(&sealed.ciphertext);
    for (what, text) in &shown {
        for secret in [
            TOKEN,
            key_b64.as_str(),
            old.as_str(),
            "dbpassw0rd",
            ct_hex.as_str(),
        ] {
            assert!(!text.contains(secret), "{what} shows a secret: {text}");
        }
    }
    assert!(
        shown[2].1.contains(ring.current_id()),
        "key ids are public and shown"
    );

    // A panic whose message formats secret-holding values carries no secret.
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        panic!(
            "scan failed: {session:?} {token:?} {ring:?} {:?}",
            settings.security
        )
    }))
    .unwrap_err();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("scan failed"), "{message}");
    for secret in [TOKEN, key_b64.as_str(), old.as_str()] {
        assert!(!message.contains(secret), "{message}");
    }
}

#[tokio::test]
async fn config_errors_do_not_echo_secret_values() {
    let key = TokenKey::generate().to_base64().expose_secret().to_string();
    let dir = tempfile::tempdir().unwrap();
    let files = [
        // A string where a list belongs: serde quotes the value.
        format!("[security]\nprevious_token_keys = \"{key}\"\n"),
        // An unterminated string: the TOML error quotes the source line.
        format!("[security]\ntoken_key = \"{key}\n"),
        // Unquoted.
        format!("[security]\ntoken_key = {key}\n"),
        format!("[database]\nurl = [\"postgres://u:{key}@h/db\"]\n"),
    ];
    for (i, contents) in files.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, contents).unwrap();
        let out = run_cli(
            &["--config", path.to_str().unwrap(), "instance", "list"],
            &[],
            None,
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains("invalid configuration"), "{stderr}");
        assert!(
            !stderr.contains(&key) && !stdout.contains(&key),
            "{contents}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
    // A misspelt secret variable: named, its value not echoed.
    let out = run_cli(
        &["instance", "list"],
        &[("SSPM__SECURITY__TOKEN_KY".into(), key.clone())],
        None,
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("token_ky"), "names the key: {stderr}");
    assert!(!stderr.contains(&key), "{stderr}");
}

/// Instances can be onboarded by plain SQL with a token reference. Whoever may write that
/// column must not be able to make the daemon send its own secrets (the token key, the
/// database URL) to the API as a bearer token.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn token_references_cannot_point_at_the_scanners_own_secrets(pool: PgPool) {
    use crate::security_hostile::{json as ok_json, me_body, Hostile};
    let api = Hostile::start(|_| ok_json(me_body())).await;
    let key = TestKey::generate().b64;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("token-key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let db_url = db::database_url(&pool);
    let mut base = Vec::new();
    for region in Region::ALL {
        base.push((
            format!(
                "SSPM__INTERCOM__BASE_URL__{}",
                region.as_str().to_uppercase()
            ),
            format!("http://{}/{region}", api.addr),
        ));
    }
    base.push(("DATABASE_URL".to_string(), db_url.clone()));
    base.push(("SSPM__INTERCOM__MAX_RETRIES".to_string(), "0".to_string()));
    let with_env_key = {
        let mut e = base.clone();
        e.push(("SSPM__SECURITY__TOKEN_KEY".into(), key.clone()));
        e
    };
    let with_key_file = {
        let mut e = base.clone();
        e.push((
            "SSPM__SECURITY__TOKEN_KEY_FILE".into(),
            key_file.display().to_string(),
        ));
        e
    };
    let cases = [
        ("env:SSPM__SECURITY__TOKEN_KEY".to_string(), &with_env_key),
        ("env:DATABASE_URL".to_string(), &with_env_key),
        (format!("file:{}", key_file.display()), &with_key_file),
    ];
    for (i, (reference, env)) in cases.iter().enumerate() {
        let name = format!("sql{i}");
        sqlx::query("INSERT INTO sspm.instances (name, region, token_ref) VALUES ($1, 'us', $2)")
            .bind(&name)
            .bind(reference)
            .execute(&pool)
            .await
            .unwrap();
        let out = run_cli(&["scan", &name], env, None).await;
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{reference}: {stdout}");
        assert!(
            stderr.contains(reference.as_str()) && stderr.contains("scanner's own"),
            "{reference}: a clear refusal naming the reference: {stderr}"
        );
        assert!(
            !stderr.contains(&key) && !stderr.contains(&db_url),
            "{stderr}"
        );
    }
    assert_eq!(api.requests(), 0, "nothing was sent to the API");
    for seen in api.seen() {
        let auth = seen.authorization.unwrap_or_default();
        assert!(
            !auth.contains(&key) && !auth.contains("postgres://"),
            "{auth}"
        );
    }
    api.stop();
}

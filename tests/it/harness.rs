//! Shared test harness for storage tests: the simulator, settings pointing at it, a token
//! key, and the per-test database URL for running the real binary.

use std::process::{Command, Output};

use intercom_sim::{Scenario, Simulator};
use intercom_sspm::config::{Settings, Sources};
use intercom_sspm::crypto::{Keyring, TokenKey};
use intercom_sspm::region::Region;
use intercom_sspm::scan::Scanner;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use std::sync::Arc;

/// The simulator keeps its own region type (it knows nothing of the scanner): these map
/// between the two.
pub fn sim_region(region: Region) -> intercom_sim::Region {
    match region {
        Region::Us => intercom_sim::Region::Us,
        Region::Eu => intercom_sim::Region::Eu,
        Region::Au => intercom_sim::Region::Au,
    }
}

pub fn product_region(region: intercom_sim::Region) -> Region {
    match region {
        intercom_sim::Region::Us => Region::Us,
        intercom_sim::Region::Eu => Region::Eu,
        intercom_sim::Region::Au => Region::Au,
    }
}

pub async fn start_sim(scenario: serde_json::Value) -> Simulator {
    let scenario: Scenario = serde_json::from_value(scenario).expect("test scenario is valid");
    Simulator::start(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Environment that points every region at the simulator (or at `base` when given).
pub fn sim_env(sim: Option<&Simulator>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for region in Region::ALL {
        let url = match sim {
            Some(s) => s.base_url(sim_region(region)),
            // A port nothing listens on: connection refused at once.
            None => format!("http://127.0.0.1:9/{region}"),
        };
        env.push((
            format!(
                "SSPM__INTERCOM__BASE_URL__{}",
                region.as_str().to_uppercase()
            ),
            url,
        ));
    }
    env.push(("SSPM__INTERCOM__REQUEST_TIMEOUT".into(), "5s".into()));
    env.push(("SSPM__INTERCOM__RETRY_BASE_DELAY".into(), "10ms".into()));
    env.push(("SSPM__INTERCOM__MAX_RETRIES".into(), "1".into()));
    env
}

pub fn settings(sim: Option<&Simulator>, extra: &[(&str, &str)]) -> Settings {
    let mut env = sim_env(sim);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load(&Sources {
        env,
        ..Default::default()
    })
    .expect("test settings are valid")
}

pub fn keyring() -> (Keyring, String) {
    let key = TokenKey::generate();
    let b64 = key.to_base64().expose_secret().to_string();
    (Keyring::new(key, vec![]), b64)
}

pub fn scanner(pool: &PgPool, settings: Settings, keyring: Keyring) -> Scanner {
    Scanner {
        pool: pool.clone(),
        client: intercom_sspm::intercom::IntercomClient::new(&settings.intercom).unwrap(),
        keyring: Some(Arc::new(keyring)),
        settings: Arc::new(settings),
        replica: "test".into(),
    }
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

/// Runs the real binary with a clean environment plus `env`, feeding `stdin`. Blocking
/// work runs off the test's runtime so an in-process simulator keeps serving.
pub async fn run_cli(args: &[&str], env: &[(String, String)], stdin: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env.to_vec();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || run_cli_blocking(&args, &env, stdin.as_deref()))
        .await
        .expect("cli runner")
}

fn run_cli_blocking(args: &[String], env: &[(String, String)], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intercom-sspm"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        // No config/default.toml from the working directory: tests state what they use.
        .current_dir(std::env::temp_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("binary runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("binary finishes")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
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

/// A two-admin healthy workspace with one token, as scenario JSON.
pub fn workspace(id_code: &str, region: &str, token: &str, scopes: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "id_code": id_code,
        "name": format!("{id_code} Inc"),
        "region": region,
        "identity_verification": true,
        "tokens": [{ "token": token, "scopes": scopes }],
        "admins": [
            { "id": "1", "name": "Owner", "email": format!("owner@{id_code}.example"), "email_verified": true,
              "role": { "id": "r1", "name": "Admin" } },
            { "id": "2", "name": "Agent", "email": format!("agent@{id_code}.example"),
              "role": { "id": "r2", "name": "Agent" } }
        ],
        "events": [
            { "id": format!("{id_code}-login-1"), "activity_type": "admin_login_success", "ago": "2d",
              "performed_by": "1", "ip": "192.0.2.10", "metadata": { "sign_in_method": "google" } },
            { "id": format!("{id_code}-login-2"), "activity_type": "admin_login_success", "ago": "3d",
              "performed_by": "2", "ip": "192.0.2.11", "metadata": { "sign_in_method": "saml" } }
        ]
    })
}

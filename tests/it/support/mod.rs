//! Everything the integration tests share, in one place.
//!
//! - [`World`]: a simulator, a token key and the test's database, built with
//!   [`World::builder`]; it onboards instances ([`World::onboard`]), builds a [`Scanner`],
//!   gives the CLI its environment and spawns daemons ([`World::daemon`], in `daemon.rs`).
//! - [`sim`]: the in-process Intercom simulator: scenarios (JSON or typed), client
//!   settings and sessions against it, its region mapping.
//! - [`db`]: the per-test database: [`db::onboard`] (THE way a test stores an instance),
//!   counts, polling, and a dump of every table for leak checks.
//! - [`cli`]: runs the real `intercom-sspm` binary.
//! - [`daemon`]: `intercom-sspm run` as a real process, and a proxy that cuts Postgres away.
//! - [`prometheus`]: a strict parser for the `/metrics` text.
//! - [`browser`]: headless Chromium over WebDriver (chromedriver), screenshots, axe-core.
//!
//! Storage tests take a fresh database from `#[sqlx::test]` (made from DATABASE_URL).

pub mod alerts;
pub mod browser;
pub mod cli;
pub mod daemon;
pub mod db;
pub mod prometheus;
pub mod sim;

use std::sync::Arc;

use intercom_sim::{FaultSpec, Scenario, Simulator};
use intercom_sspm::config::{Settings, Sources};
use intercom_sspm::crypto::{Keyring, TokenKey};
use intercom_sspm::db::instances::Instance;
use intercom_sspm::region::Region;
use intercom_sspm::scan::Scanner;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

pub use db::{count, Onboard};

/// A token key as an operator holds it: its base64 (what SSPM__SECURITY__TOKEN_KEY takes)
/// and its id (what sealed rows record).
#[derive(Clone)]
pub struct TestKey {
    pub b64: String,
    pub id: String,
}

impl TestKey {
    pub fn generate() -> TestKey {
        let key = TokenKey::generate();
        TestKey {
            b64: key.to_base64().expose_secret().to_string(),
            id: key.id().to_string(),
        }
    }

    /// A keyring with this key current and nothing previous.
    pub fn ring(&self) -> Keyring {
        self.ring_with(&[])
    }

    /// A keyring with this key current and `previous` still accepted for opening.
    pub fn ring_with(&self, previous: &[&TestKey]) -> Keyring {
        Keyring::new(
            TokenKey::from_base64(&self.b64, "test").unwrap(),
            previous
                .iter()
                .map(|k| TokenKey::from_base64(&k.b64, "test").unwrap())
                .collect(),
        )
    }
}

/// Product settings with every region pointed at `sim` (or at a closed port when `None`),
/// fast retries, plus `extra` environment (later entries win).
pub fn settings(sim: Option<&Simulator>, extra: &[(&str, &str)]) -> Settings {
    let mut env = sim::sim_env(sim);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load(&Sources {
        env,
        ..Default::default()
    })
    .expect("test settings are valid")
}

/// A library scanner over `pool` with `settings`, opening tokens with `keyring`.
pub fn scanner(pool: &PgPool, settings: Settings, keyring: Keyring) -> Scanner {
    Scanner {
        pool: pool.clone(),
        client: intercom_sspm::intercom::IntercomClient::new(&settings.intercom).unwrap(),
        keyring: Some(Arc::new(keyring)),
        settings: Arc::new(settings),
        replica: "test".into(),
    }
}

/// One test's world: the simulator serving its scenario, a token key, and its database.
///
/// ```ignore
/// let w = World::builder(&pool)
///     .workspace(sim::workspace_json("acme", "us", TOKEN, &["read_admins"]))
///     .build()
///     .await;
/// let acme = w.onboard(&Onboard::new("acme"), TOKEN).await;
/// let mut d = w.daemon("solo", &[]);
/// ```
pub struct World {
    pub pool: PgPool,
    pub sim: Simulator,
    pub key: TestKey,
    /// Opens and seals with `key` (a fresh keyring of the same key).
    pub keyring: Keyring,
    /// The URL of `pool`'s database, for processes the test spawns.
    pub db_url: String,
}

/// Collects the scenario of a [`World`]; `build` starts the simulator.
pub struct WorldBuilder {
    pool: PgPool,
    workspaces: Vec<serde_json::Value>,
    scenario: Option<Scenario>,
}

impl WorldBuilder {
    /// Adds a workspace given as scenario JSON (see [`sim::workspace_json`]).
    pub fn workspace(mut self, workspace: serde_json::Value) -> Self {
        self.workspaces.push(workspace);
        self
    }

    pub fn workspaces(mut self, workspaces: Vec<serde_json::Value>) -> Self {
        self.workspaces.extend(workspaces);
        self
    }

    /// A whole typed scenario (e.g. from `intercom_sim::generate`), instead of workspaces.
    pub fn scenario(mut self, scenario: Scenario) -> Self {
        self.scenario = Some(scenario);
        self
    }

    pub async fn build(self) -> World {
        let sim = match self.scenario {
            Some(scenario) => {
                assert!(
                    self.workspaces.is_empty(),
                    "give a scenario or workspaces, not both"
                );
                sim::start(scenario).await
            }
            None => sim::start_json(serde_json::json!({ "workspaces": self.workspaces })).await,
        };
        let key = TestKey::generate();
        World {
            db_url: db::database_url(&self.pool),
            pool: self.pool,
            sim,
            keyring: key.ring(),
            key,
        }
    }
}

impl World {
    pub fn builder(pool: &PgPool) -> WorldBuilder {
        WorldBuilder {
            pool: pool.clone(),
            workspaces: Vec::new(),
            scenario: None,
        }
    }

    /// Stores an instance as `instance add` would, its token sealed under the world's key.
    pub async fn onboard(&self, spec: &Onboard<'_>, token: &str) -> Instance {
        db::onboard(&self.pool, &self.keyring, spec, token).await
    }

    /// Onboards the workspace made by [`sim::named_workspace`]`(name, ..)`: workspace id
    /// `name`, token [`sim::token_of`]`(name)`.
    pub async fn onboard_named(&self, name: &str, region: Region, schedule: &str) -> Uuid {
        let spec = Onboard::new(name).region(region).schedule(schedule);
        self.onboard(&spec, &sim::token_of(name)).await.id
    }

    /// A library scanner against the simulator, with `extra` settings.
    pub fn scanner(&self, extra: &[(&str, &str)]) -> Scanner {
        scanner(
            &self.pool,
            settings(Some(&self.sim), extra),
            self.key.ring(),
        )
    }

    /// Environment for the real binary: the simulator, the database, the key.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        cli::env(&self.pool, Some(&self.sim), &self.key.b64)
    }

    /// Replaces the faults of workspace `id_code` (FaultSpec as JSON).
    pub fn set_faults(&self, id_code: &str, faults: serde_json::Value) {
        self.sim
            .scenario_handle()
            .set_workspace_faults(id_code, sim::faults(faults))
            .unwrap();
    }

    /// Makes `endpoint` of workspace `id_code` answer after `latency_ms`.
    pub fn slow(&self, id_code: &str, endpoint: &str, latency_ms: u64) {
        self.set_faults(
            id_code,
            serde_json::json!({ "endpoints": [endpoint], "latency_ms": latency_ms }),
        );
    }

    /// Clears every fault of workspace `id_code`.
    pub fn heal(&self, id_code: &str) {
        self.sim
            .scenario_handle()
            .set_workspace_faults(id_code, FaultSpec::default())
            .unwrap();
    }
}

/// A port that was free a moment ago, for peers that must be told their port up front
/// (Prometheus, the Python SMTP sink). Our own daemons bind port 0 and report theirs.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A console page without the console's own scan-status script tag (its only script), so
/// that tests can assert no other script, injected or inline, is on the page.
pub fn without_own_script(body: &str) -> String {
    body.replace(
        &format!(
            "<script src=\"{}\" defer></script>",
            intercom_sspm::console::assets::scan_status_src()
        ),
        "",
    )
}

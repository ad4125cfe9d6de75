//! Settings, layered: built-in defaults < `config/default.toml` < `--config FILE` (or
//! `SSPM_CONFIG`) < environment `SSPM__SECTION__KEY`; `DATABASE_URL` stands in for
//! `database.url`. Every value is checked at startup and a bad one names its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::region::Region;
use crate::schedule::Schedule;

/// What can go wrong while loading settings; each message names the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: config::ConfigError,
    },
    #[error("config file {path} does not exist: check --config / SSPM_CONFIG")]
    Missing { path: String },
    /// The message of a `config::ConfigError`, with secret values taken out (see `redacted`).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration value for `{key}`: {message}")]
    Value { key: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub intercom: IntercomSettings,
    #[serde(default)]
    pub scheduler: SchedulerSettings,
    #[serde(default)]
    pub shutdown: ShutdownSettings,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub security: SecuritySettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub scan: ScanSettings,
    #[serde(default)]
    pub checks: crate::checks::CheckSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub notify: NotifySettings,
    #[serde(default)]
    pub console: crate::console::settings::ConsoleSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Secret because a URL may carry a password.
    pub url: Option<SecretString>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            // Not one per scan slot: a scan holds a connection only while it reads or writes,
            // and more busy backends than the database has cores make each statement cost
            // more CPU there (benches/README.md, "pool size": 10 against 20 on 2 cores).
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntercomSettings {
    pub base_url: BaseUrls,
    /// Pinned so a customer editing their app's API version cannot change what we parse.
    pub api_version: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Upper bound for one whole scan's API work, retries and waits included.
    #[serde(with = "humantime_serde")]
    pub scan_timeout: Duration,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    /// Longest a scan waits for a rate-limit window to reset before giving up the slot.
    #[serde(with = "humantime_serde")]
    pub max_rate_limit_wait: Duration,
    pub max_pages: u32,
    pub max_body_bytes: u64,
    /// `per_page` asked of the activity log (the API may ignore it).
    pub activity_page_size: u32,
}

impl Default for IntercomSettings {
    fn default() -> Self {
        Self {
            base_url: BaseUrls::default(),
            api_version: "2.16".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            scan_timeout: Duration::from_secs(600),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(500),
            max_rate_limit_wait: Duration::from_secs(60),
            max_pages: 1000,
            max_body_bytes: 16 * 1024 * 1024,
            activity_page_size: 150,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseUrls {
    pub us: String,
    pub eu: String,
    pub au: String,
}

impl Default for BaseUrls {
    fn default() -> Self {
        Self {
            us: Region::Us.default_base_url().into(),
            eu: Region::Eu.default_base_url().into(),
            au: Region::Au.default_base_url().into(),
        }
    }
}

impl BaseUrls {
    pub fn get(&self, region: Region) -> &str {
        match region {
            Region::Us => &self.us,
            Region::Eu => &self.eu,
            Region::Au => &self.au,
        }
    }

    /// Parsed form; `validate` has already proven these parse.
    pub fn url(&self, region: Region) -> Url {
        Url::parse(self.get(region)).expect("base URLs are validated at load")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Used for instances added without `--schedule`.
    pub default_schedule: String,
    pub max_concurrent_scans: usize,
    /// Per-region caps so one slow region never starves the others.
    pub region_concurrency: BTreeMap<Region, usize>,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Fraction of the interval added at random when rescheduling (0.05 = up to 5%).
    pub jitter: f64,
    /// Cap on that random delay for cron schedules, which mean "at that time".
    #[serde(with = "humantime_serde")]
    pub cron_jitter: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl SchedulerSettings {
    pub fn jitter_policy(&self) -> crate::scheduler::timing::Jitter {
        crate::scheduler::timing::Jitter {
            fraction: self.jitter,
            cron_max: self.cron_jitter,
        }
    }
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            default_schedule: "6h".into(),
            max_concurrent_scans: 32,
            region_concurrency: Region::ALL.iter().map(|r| (*r, 16)).collect(),
            poll_interval: Duration::from_secs(5),
            lease: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(60),
            jitter: 0.05,
            cron_jitter: Duration::from_secs(60),
            max_backoff: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Base64 of 32 random bytes (`intercom-sspm keygen`).
    pub token_key: Option<SecretString>,
    /// A file holding the key, e.g. a systemd credential or a mounted Kubernetes Secret.
    pub token_key_file: Option<PathBuf>,
    /// Keys still accepted for opening tokens during a rotation; never used to seal.
    pub previous_token_keys: Vec<SecretString>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSettings {
    /// Probe low-sensitivity endpoints to detect scopes the token should not hold.
    pub probe_extra_scopes: bool,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            probe_extra_scopes: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Scans, check results and finding history older than this are pruned.
    pub days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { days: 90 }
    }
}

/// The values one source sets, flattened to dotted keys, and what to call the source in
/// messages: "built-in default", an absolute file path, or an environment variable.
#[derive(Debug, Clone)]
pub struct Layer {
    pub source: String,
    pub values: BTreeMap<String, String>,
}

/// The built-in defaults, written out (`shipped_default_toml_loads_and_matches_built_ins`
/// keeps them equal to the `Default` impls).
const BUILT_IN: &str = include_str!("../config/default.toml");

/// The layers of `sources` in `Settings::load` order (later wins). Environment layers
/// hold one variable each so each key names its variable.
pub fn layers(sources: &Sources) -> Result<Vec<Layer>, ConfigError> {
    let mut out = vec![Layer {
        source: "built-in default".into(),
        values: toml_values(BUILT_IN).unwrap_or_default(),
    }];
    for path in [&sources.defaults_file, &sources.file]
        .into_iter()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(path) {
            out.push(Layer {
                source: display_path(path),
                // An unparsable file is reported by Settings::load with its position.
                values: toml_values(&text).unwrap_or_default(),
            });
        }
    }
    let explicit_url = sources.env.iter().any(|(k, _)| k == "SSPM__DATABASE__URL");
    for (var, value) in &sources.env {
        let key = match var.strip_prefix("SSPM__") {
            Some(rest) => rest.to_ascii_lowercase().replace("__", "."),
            None if var == "DATABASE_URL" && !explicit_url => "database.url".into(),
            None => continue,
        };
        out.push(Layer {
            source: format!("environment variable {var}"),
            values: BTreeMap::from([(key, value.clone())]),
        });
    }
    Ok(out)
}

fn display_path(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn toml_values(text: &str) -> Option<BTreeMap<String, String>> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut out = BTreeMap::new();
    flatten("", &toml::Value::Table(table), &mut out);
    Some(out)
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Where the effective `key` comes from, or None when it has its built-in value (a
/// shipped config/default.toml restating the default does not count).
pub fn explicit_source(sources: &Sources, key: &str) -> Option<String> {
    let layers = layers(sources).ok()?;
    let built_in = layers.first()?.values.get(key);
    layers[1..]
        .iter()
        .rev()
        .find_map(|l| l.values.get(key).map(|v| (v, &l.source)))
        .filter(|(v, _)| Some(*v) != built_in)
        .map(|(_, source)| source.clone())
}

/// Which layer last set `key` (or a key below it).
fn source_of<'a>(layers: &'a [Layer], key: &str) -> Option<&'a str> {
    let below = format!("{key}.");
    layers
        .iter()
        .rev()
        .find(|l| l.values.keys().any(|k| k == key || k.starts_with(&below)))
        .map(|l| l.source.as_str())
}

/// The messages of the config crate, made to say where the bad value came from and what
/// would be accepted: unknown keys get a "did you mean", enum values their choices.
fn explain(message: String, layers: &[Layer]) -> String {
    let between = |text: &str, start: &str, end: &str| -> Option<String> {
        let from = text.find(start)? + start.len();
        let len = text[from..].find(end)?;
        Some(text[from..from + len].to_string())
    };
    let parent = between(&message, "for key `", "`");
    if let Some(field) = between(&message, "unknown field `", "`") {
        let key = match &parent {
            Some(p) if !p.is_empty() => format!("{p}.{field}"),
            _ => field.clone(),
        };
        let expected: Vec<String> = message
            .split("expected one of ")
            .nth(1)
            .map(|rest| rest.split(" for key").next().unwrap_or(rest))
            .unwrap_or("")
            .split(", ")
            .map(|e| e.trim_matches('`').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        let suggestion = expected
            .iter()
            .map(|e| (strsim::jaro_winkler(e, &field), e))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, e)| format!(" (did you mean `{e}`?)"))
            .unwrap_or_default();
        let source = source_of(layers, &key)
            .map(|s| format!(" in {s}"))
            .unwrap_or_default();
        return format!(
            "unknown key `{key}`{source}{suggestion}; known keys there: {}",
            expected.join(", ")
        );
    }
    if message.contains("does not have variant constructor") {
        if let Some(key) = &parent {
            let value = between(&message, "variant constructor ", " for key").unwrap_or_default();
            let choices = match key.as_str() {
                "log.format" => "pretty or json",
                _ => "one of the documented values (see config/default.toml)",
            };
            let source = source_of(layers, key)
                .map(|s| format!(" (set in {s})"))
                .unwrap_or_default();
            return format!("`{key}` = {value:?}{source} is not valid: use {choices}");
        }
    }
    match parent.as_deref().and_then(|k| source_of(layers, k)) {
        Some(source) => format!("{message} (set in {source})"),
        None => message,
    }
}

/// Alert delivery (docs/ALERTS.md): the outbox worker in every daemon replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Run the delivery worker in `intercom-sspm run` (scans enqueue alerts either way).
    pub enabled: bool,
    /// A message still undelivered after this many attempts is `dead`.
    pub max_attempts: u32,
    /// A message older than this is `dead` instead of retried.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole request, including reading the (capped) response.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Response bodies are read up to this many bytes and discarded beyond.
    pub max_response_bytes: usize,
    /// First retry delay; doubles per attempt, with jitter, up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long a claimed message belongs to this replica before others may send it.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Messages claimed and sent concurrently per round.
    pub concurrency: usize,
    /// Minimum spacing of messages to one Slack channel (Slack allows about 1/s).
    #[serde(with = "humantime_serde")]
    pub slack_pace: Duration,
    /// PagerDuty Events API v2 base URL (`/v2/enqueue` is appended); tests point it at a local receiver.
    pub pagerduty_url: String,
    /// A digest slot missed by more than this (all replicas down) is skipped, not sent late.
    #[serde(with = "humantime_serde")]
    pub digest_grace: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 10,
            max_age: Duration::from_secs(24 * 3600),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_response_bytes: 65536,
            retry_base_delay: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            concurrency: 32,
            slack_pace: Duration::from_secs(1),
            pagerduty_url: "https://events.pagerduty.com".into(),
            digest_grace: Duration::from_secs(600),
        }
    }
}

/// Where to look for settings; tests pass their own so the process environment stays out.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `config/default.toml` style file, optional.
    pub defaults_file: Option<PathBuf>,
    /// `--config` / `SSPM_CONFIG`, required when given.
    pub file: Option<PathBuf>,
    /// Environment variables to read (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The production layering, reading the real process environment.
    pub fn from_process(config_file: Option<PathBuf>) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = config_file.or_else(|| {
            env.iter()
                .find(|(k, _)| k == "SSPM_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        Self {
            defaults_file: Some(PathBuf::from("config/default.toml")),
            file,
            env,
        }
    }
}

impl Settings {
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = &sources.defaults_file {
            if path.exists() {
                builder = builder.add_source(toml_file(path, true)?);
            }
        }
        if let Some(path) = &sources.file {
            builder = builder.add_source(toml_file(path, true)?);
        }
        let mut env_map: config::Map<String, String> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("SSPM__"))
            .cloned()
            .collect();
        let invalid = |e: config::ConfigError| redacted(&e, &sources.env);
        // A list cannot be written as one environment variable otherwise; base64 keys
        // contain no commas. Lets containers pass the old key during a rotation.
        if let Some(keys) = env_map.remove("SSPM__SECURITY__PREVIOUS_TOKEN_KEYS") {
            let list: Vec<String> = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            builder = builder
                .set_override("security.previous_token_keys", list)
                .map_err(invalid)?;
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SSPM")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env_map)),
        );
        // DATABASE_URL is the convention of sqlx, Heroku-style hosts and most tooling;
        // the explicit SSPM__DATABASE__URL still wins when both are set.
        let has_explicit = sources.env.iter().any(|(k, _)| k == "SSPM__DATABASE__URL");
        if !has_explicit {
            if let Some((_, url)) = sources.env.iter().find(|(k, _)| k == "DATABASE_URL") {
                builder = builder
                    .set_override("database.url", url.clone())
                    .map_err(invalid)?;
            }
        }
        let layers = layers(sources)?;
        let settings: Settings =
            builder
                .build()
                .and_then(|c| c.try_deserialize())
                .map_err(|e| match invalid(e) {
                    ConfigError::Invalid(message) => {
                        ConfigError::Invalid(explain(message, &layers))
                    }
                    other => other,
                })?;
        settings.validate().map_err(|e| match e {
            ConfigError::Value { key, message } => match source_of(&layers, &key) {
                Some(source) => ConfigError::Value {
                    message: format!("{message} (set in {source})"),
                    key,
                },
                None => ConfigError::Value { key, message },
            },
            other => other,
        })?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for region in Region::ALL {
            let key = format!("intercom.base_url.{region}");
            validate_base_url(&key, self.intercom.base_url.get(region))?;
        }
        if self.intercom.api_version.trim().is_empty() {
            return Err(value_error(
                "intercom.api_version",
                "must not be empty (e.g. \"2.16\")",
            ));
        }
        Schedule::parse(&self.scheduler.default_schedule)
            .map_err(|e| value_error("scheduler.default_schedule", &e.to_string()))?;
        if self.scheduler.max_concurrent_scans == 0 {
            return Err(value_error(
                "scheduler.max_concurrent_scans",
                "must be at least 1",
            ));
        }
        if !(0.0..=0.5).contains(&self.scheduler.jitter) {
            return Err(value_error("scheduler.jitter", "must be between 0 and 0.5"));
        }
        if self.scheduler.cron_jitter > Duration::from_secs(3600) {
            return Err(value_error(
                "scheduler.cron_jitter",
                "must be at most 1h: a cron schedule means \"at that time\"",
            ));
        }
        if self.scheduler.heartbeat_interval >= self.scheduler.lease {
            return Err(value_error(
                "scheduler.heartbeat_interval",
                "must be shorter than scheduler.lease, or leases expire between heartbeats",
            ));
        }
        for (key, d) in [
            ("scheduler.poll_interval", self.scheduler.poll_interval),
            ("scheduler.lease", self.scheduler.lease),
            ("intercom.request_timeout", self.intercom.request_timeout),
            ("intercom.connect_timeout", self.intercom.connect_timeout),
            ("intercom.scan_timeout", self.intercom.scan_timeout),
        ] {
            if d.is_zero() {
                return Err(value_error(key, "must be greater than zero"));
            }
        }
        validate_base_url("notify.pagerduty_url", &self.notify.pagerduty_url)?;
        for (key, d) in [
            ("notify.request_timeout", self.notify.request_timeout),
            ("notify.connect_timeout", self.notify.connect_timeout),
            ("notify.lease", self.notify.lease),
            ("notify.poll_interval", self.notify.poll_interval),
            ("notify.max_age", self.notify.max_age),
        ] {
            if d.is_zero() {
                return Err(value_error(key, "must be greater than zero"));
            }
        }
        if self.notify.max_attempts == 0 || self.notify.concurrency == 0 {
            return Err(value_error(
                "notify.max_attempts / notify.concurrency",
                "must be at least 1",
            ));
        }
        if self.notify.request_timeout * 2 >= self.notify.lease {
            return Err(value_error(
                "notify.lease",
                "must be more than twice notify.request_timeout, or a slow send outlives its lease and is sent twice",
            ));
        }
        if self.intercom.max_pages == 0 {
            return Err(value_error("intercom.max_pages", "must be at least 1"));
        }
        if self.intercom.max_body_bytes < 1024 {
            return Err(value_error(
                "intercom.max_body_bytes",
                "must be at least 1024",
            ));
        }
        self.server
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| {
                value_error(
                    "server.listen",
                    &format!("{e}; expected host:port such as 0.0.0.0:9464"),
                )
            })?;
        crate::telemetry::parse_level(&self.log.level)
            .map_err(|e| value_error("log.level", &e.to_string()))?;
        self.checks.validate()?;
        self.console.validate(&self.server.listen)?;
        Ok(())
    }

    /// The database URL, or a message that says how to provide one.
    pub fn database_url(&self) -> Result<&SecretString, ConfigError> {
        self.database.url.as_ref().ok_or_else(|| {
            value_error(
                "database.url",
                "not set: set DATABASE_URL (or SSPM__DATABASE__URL, or database.url in the config file)",
            )
        })
    }
}

/// Environment variables whose values are secrets.
fn is_secret_env(key: &str) -> bool {
    key == "DATABASE_URL" || key == "SSPM__DATABASE__URL" || key.starts_with("SSPM__SECURITY__")
}

/// A config error's message without secrets: the config and toml crates quote offending
/// values (`invalid type: string "<key>"`) and source lines (`2 | token_key = "<key>`), which
/// would put a token key or a database password on stderr and into the journal.
fn redacted(e: &config::ConfigError, env: &[(String, String)]) -> ConfigError {
    let mut text = e.to_string();
    for (key, value) in env {
        if is_secret_env(key) && !value.trim().is_empty() {
            text = text.replace(value.as_str(), "[REDACTED]");
        }
    }
    // TOML parse errors quote the offending line: keep the position, drop the excerpt.
    text = text
        .lines()
        .filter(|line| {
            let t = line
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit());
            !t.trim_start().starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n");
    if text.contains("`security.") || text.contains("`database.url") {
        text = redact_quoted(&text);
    }
    ConfigError::Invalid(text)
}

/// Replaces every `"..."` span by `"[REDACTED]"`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        out.push('"');
        out.push_str(if i % 2 == 0 { "[REDACTED]" } else { part });
    }
    out
}

pub(crate) fn value_error(key: &str, message: &str) -> ConfigError {
    ConfigError::Value {
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn toml_file(
    path: &Path,
    required: bool,
) -> Result<config::File<config::FileSourceFile, config::FileFormat>, ConfigError> {
    if required && !path.exists() {
        return Err(ConfigError::Missing {
            path: display_path(path),
        });
    }
    Ok(config::File::from(path.to_path_buf())
        .format(config::FileFormat::Toml)
        .required(required))
}

fn validate_base_url(key: &str, raw: &str) -> Result<(), ConfigError> {
    let url =
        Url::parse(raw).map_err(|e| value_error(key, &format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(value_error(
            key,
            &format!("{raw:?} must be an http(s) URL with a host"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(value_error(
            key,
            &format!("{raw:?} must not carry a query or fragment"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    #[test]
    fn built_in_defaults_apply_without_any_source() {
        let s = Settings::load(&Sources::default()).unwrap();
        assert_eq!(s.intercom.base_url.eu, "https://api.eu.intercom.io");
        assert_eq!(s.scheduler.poll_interval, Duration::from_secs(5));
        assert_eq!(s.shutdown.drain_timeout, Duration::from_secs(30));
        assert!(s.database.url.is_none());
        assert!(
            s.security.token_key.is_none(),
            "no secret may have a default"
        );
    }

    #[test]
    fn layers_override_in_order_defaults_file_then_file_then_env() {
        let defaults = file("[scheduler]\npoll_interval = \"7s\"\nmax_concurrent_scans = 3\n[log]\nlevel = \"debug\"\n");
        let explicit = file("[scheduler]\npoll_interval = \"9s\"\n");
        let sources = Sources {
            defaults_file: Some(defaults.path().into()),
            file: Some(explicit.path().into()),
            env: env(&[
                ("SSPM__LOG__LEVEL", "warn"),
                ("SSPM__INTERCOM__BASE_URL__EU", "http://127.0.0.1:9000"),
            ]),
        };
        let s = Settings::load(&sources).unwrap();
        assert_eq!(
            s.scheduler.poll_interval,
            Duration::from_secs(9),
            "file beats defaults file"
        );
        assert_eq!(
            s.scheduler.max_concurrent_scans, 3,
            "defaults file beats built-in"
        );
        assert_eq!(s.log.level, "warn", "env beats files");
        assert_eq!(s.intercom.base_url.eu, "http://127.0.0.1:9000");
        assert_eq!(s.intercom.base_url.us, "https://api.intercom.io");
    }

    #[test]
    fn database_url_alias_and_explicit_precedence() {
        let s = Settings::load(&Sources {
            env: env(&[("DATABASE_URL", "postgres://a/b")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.database_url().unwrap().expose_secret(), "postgres://a/b");
        let s = Settings::load(&Sources {
            env: env(&[
                ("DATABASE_URL", "postgres://a/b"),
                ("SSPM__DATABASE__URL", "postgres://c/d"),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.database_url().unwrap().expose_secret(), "postgres://c/d");
        let missing = Settings::load(&Sources::default())
            .unwrap()
            .database_url()
            .unwrap_err();
        assert!(missing.to_string().contains("DATABASE_URL"));
    }

    fn load_err(pairs: &[(&str, &str)]) -> String {
        Settings::load(&Sources {
            env: env(pairs),
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load_err(&[("SSPM__INTERCOM__BASE_URL__AU", "not a url")]);
        assert!(e.contains("intercom.base_url.au"), "{e}");
        let e = load_err(&[("SSPM__SCHEDULER__POLL_INTERVAL", "soon")]);
        assert!(e.contains("scheduler.poll_interval"), "{e}");
        let e = load_err(&[("SSPM__SCHEDULER__DEFAULT_SCHEDULE", "every tuesday")]);
        assert!(e.contains("scheduler.default_schedule"), "{e}");
        let e = load_err(&[("SSPM__LOG__FORMAT", "xml")]);
        assert!(e.contains("log.format"), "{e}");
        let e = load_err(&[("SSPM__SERVER__LISTEN", "localhost")]);
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn errors_name_their_source_and_suggest_the_key() {
        let e = load_err(&[("SSPM__SCHEDULR__POLL_INTERVAL", "5s")]);
        assert!(
            e.contains("SSPM__SCHEDULR__POLL_INTERVAL") && e.contains("did you mean `scheduler`"),
            "{e}"
        );
        let e = load_err(&[("SSPM__LOG__FORMAT", "xml")]);
        assert!(
            e.contains("pretty or json")
                && e.contains("SSPM__LOG__FORMAT")
                && !e.contains("variant constructor"),
            "{e}"
        );
        let e = load_err(&[("SSPM__LOG__LEVEL", "loud")]);
        assert!(
            e.contains("log.level") && e.contains("SSPM__LOG__LEVEL"),
            "{e}"
        );
        let f = file("[scheduler]\nmax_concurent_scans = 3\n");
        let e = Settings::load(&Sources {
            file: Some(f.path().into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        let path = f.path().display().to_string();
        assert!(
            e.contains(&path) && e.contains("did you mean `max_concurrent_scans`"),
            "{e}"
        );
        let e = Settings::load(&Sources {
            file: Some("relative/missing.toml".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("does not exist") && !e.contains("file not found: file not found"),
            "{e}"
        );
        assert!(
            std::path::Path::new(e.split_whitespace().nth(2).unwrap()).is_absolute(),
            "{e}"
        );
    }

    #[test]
    fn unknown_region_in_region_concurrency_is_rejected() {
        let f = file("[scheduler.region_concurrency]\nca = 3\n");
        let e = Settings::load(&Sources {
            file: Some(f.path().into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("ca"), "{e}");
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let e = Settings::load(&Sources {
            file: Some("/nonexistent/sspm.toml".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/sspm.toml"), "{e}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = Settings::load(&Sources {
            env: env(&[
                ("DATABASE_URL", "postgres://user:hunter2pw@db/sspm"),
                (
                    "SSPM__SECURITY__TOKEN_KEY",
                    "c2VjcmV0LWtleS1tYXRlcmlhbC1zZWNyZXQta2V5LTMy",
                ),
            ]),
            ..Default::default()
        })
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2pw"), "{dbg}");
        assert!(!dbg.contains("c2VjcmV0LWtleS1tYXRlcmlhbC1zZWNyZXQta2V5LTMy"));
    }

    #[test]
    fn shipped_default_toml_loads_and_matches_built_ins() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let s = Settings::load(&Sources {
            defaults_file: Some(path),
            ..Default::default()
        })
        .unwrap();
        let b = Settings::load(&Sources::default()).unwrap();
        assert_eq!(
            format!("{s:?}"),
            format!("{b:?}"),
            "config/default.toml documents the built-in defaults"
        );
    }
}

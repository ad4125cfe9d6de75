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
            max_connections: 20,
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
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
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
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(invalid)?;
        settings.validate()?;
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
        return Err(ConfigError::File {
            path: path.to_path_buf(),
            source: config::ConfigError::Message("file not found".into()),
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

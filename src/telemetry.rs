//! Logging: `tracing` with a `RUST_LOG`-style filter, pretty for people or JSON for
//! collectors. Spans carry instance and scan ids, never tokens.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Set when the pretty (human) format is installed: spans then carry short ids only.
static PRETTY: AtomicBool = AtomicBool::new(false);

/// Whether logs are in the pretty format, read by people in a terminal. Span fields
/// that only machines need (full instance ids, the region) are recorded only otherwise,
/// so a scan's lines stay under ~160 characters.
pub fn pretty() -> bool {
    PRETTY.load(Ordering::Relaxed)
}

/// A scan span: `scan{scan_id, instance}`, plus `instance_id` and `region` for JSON
/// logs. The scheduler opens it at the claim, before it knows the name; the scanner
/// records `instance` then (see [`record_scan_instance`]) instead of nesting a second
/// span that would repeat every field.
pub fn scan_span(
    scan_id: uuid::Uuid,
    instance_id: uuid::Uuid,
    region: crate::region::Region,
) -> tracing::Span {
    let span = tracing::info_span!(
        SCAN_SPAN,
        scan_id = %LogId(scan_id),
        instance = tracing::field::Empty,
        instance_id = tracing::field::Empty,
        region = tracing::field::Empty,
    );
    if !pretty() {
        span.record("instance_id", tracing::field::display(instance_id));
        span.record("region", tracing::field::display(region));
    }
    span
}

/// The name of [`scan_span`]s.
pub const SCAN_SPAN: &str = "scan";

/// Records the instance's name on the current scan span; false when the current span
/// is not one (the caller then opens its own).
pub fn record_scan_instance(name: &str) -> bool {
    let current = tracing::Span::current();
    if current.metadata().map(|m| m.name()) != Some(SCAN_SPAN) {
        return false;
    }
    current.record("instance", tracing::field::display(name));
    true
}

/// An id in a log line: whole in JSON, its first 8 characters in the pretty format
/// (enough to tell scans apart on one screen; `intercom-sspm` lists show the same prefix).
pub struct LogId(pub uuid::Uuid);

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if pretty() {
            f.write_str(&self.0.simple().to_string()[..8])
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Pretty timestamps to the second, in UTC: microseconds are noise to a reader.
struct Seconds;

impl fmt::time::FormatTime for Seconds {
    fn format_time(&self, w: &mut fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

/// How much a process logs, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// The daemon: `log.level`.
    Configured,
    /// A CLI command: warnings only. Its output is the report; INFO lines would repeat it.
    Command,
    /// `--quiet`: errors only.
    Quiet,
    /// `-v` (info), `-vv` (debug), `-vvv` (trace).
    Verbose(u8),
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{level:?} is not a log filter ({reason}); use a level (error, warn, info, debug, trace) or RUST_LOG syntax such as \"info,intercom_sspm=debug\"")]
    BadLevel { level: String, reason: String },
}

/// Checks a `log.level` filter (config validation uses this too).
pub fn parse_level(level: &str) -> Result<EnvFilter, TelemetryError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    // EnvFilter reads a bare word as a target to trace in full, so "verbose" or "warning"
    // would silently log nothing useful: a bare directive must be a level.
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '['])
            && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
        {
            return Err(TelemetryError::BadLevel {
                level: level.to_string(),
                reason: format!(
                    "{directive:?} is not a level; write target=level to name a module"
                ),
            });
        }
    }
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| TelemetryError::BadLevel {
            level: level.to_string(),
            reason: e.to_string(),
        })
}

/// Installs the global subscriber. `RUST_LOG` wins over `log.level` and the verbosity
/// flags. Logs go to stderr so command output on stdout stays machine-readable, with
/// colour only when stderr is a terminal.
pub fn init(settings: &LogSettings, verbosity: Verbosity) -> Result<(), TelemetryError> {
    let level = match verbosity {
        Verbosity::Configured => settings.level.clone(),
        // The scan's own outcome lines ("scan failed") repeat the summary it prints.
        Verbosity::Command => "warn,intercom_sspm::scan=error".into(),
        Verbosity::Quiet => "error".into(),
        Verbosity::Verbose(1) => "info".into(),
        Verbosity::Verbose(2) => "debug".into(),
        Verbosity::Verbose(_) => "trace".into(),
    };
    // Validated even when RUST_LOG overrides it: a typo must not lie in wait.
    parse_level(&settings.level)?;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => parse_level(&with_quiet_dependencies(&level))?,
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => {
            PRETTY.store(true, Ordering::Relaxed);
            builder.with_target(false).with_timer(Seconds).try_init()
        }
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
    Ok(())
}

/// sqlx logs every statement at debug and routine notices ("relation already exists") at
/// info, and tokio-cron-scheduler narrates its start-up at info; unless the operator names
/// them explicitly, keep them to warnings.
fn with_quiet_dependencies(level: &str) -> String {
    let mut filter = level.to_string();
    for dependency in ["sqlx", "tokio_cron_scheduler"] {
        if !level.contains(dependency) {
            filter.push_str(&format!(",{dependency}=warn"));
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_dependencies_are_quiet_unless_named() {
        assert_eq!(
            with_quiet_dependencies("debug"),
            "debug,sqlx=warn,tokio_cron_scheduler=warn"
        );
        assert_eq!(
            with_quiet_dependencies("info,sqlx=debug"),
            "info,sqlx=debug,tokio_cron_scheduler=warn"
        );
    }

    #[test]
    fn a_bad_level_is_an_error_naming_the_key() {
        assert!(parse_level("info,intercom_sspm=debug").is_ok());
        let e = parse_level("loud").unwrap_err().to_string();
        assert!(e.contains("loud") && e.contains("not a level"), "{e}");
        assert!(parse_level("info,foo=verbose").is_err());
    }
}

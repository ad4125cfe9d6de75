//! Logging: `tracing` with a `RUST_LOG`-style filter, pretty for people or JSON for
//! collectors. Spans carry instance and scan ids, never tokens.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG` wins over `log.level`. Logs go to stderr so
/// command output on stdout stays machine-readable.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(with_quiet_dependencies(&settings.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
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
}

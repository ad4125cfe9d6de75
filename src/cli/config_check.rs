//! `intercom-sspm config check`: validate the configuration and show what is in effect.

use std::process::ExitCode;

use clap::Subcommand;

use std::collections::BTreeMap;

use crate::config::{Settings, Sources};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the layered configuration and print every effective value, secrets
    /// masked, with its source (built-in default, a file, or an environment variable).
    #[command(
        after_help = "Examples:\n  intercom-sspm config check\n  SSPM__SCHEDULER__POLL_INTERVAL=10s intercom-sspm --config /etc/intercom-sspm/config.toml config check"
    )]
    Check,
}

pub fn run(sources: &Sources, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check => {
            Settings::load(sources)?;
            let rows = provenance(sources)?
                .into_iter()
                .map(|v| vec![v.key, v.value, v.source])
                .collect();
            outln!(
                "{}",
                super::output::table_in_full(&["key", "value", "source"], rows)
            );
            outln!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One effective setting as `config check` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub key: String,
    pub value: String,
    pub source: String,
}

/// Every key set by some layer, with the value and the layer that won (later wins, as in
/// `Settings::load`). Secrets are masked.
pub fn provenance(sources: &Sources) -> anyhow::Result<Vec<Effective>> {
    let mut merged: BTreeMap<String, (String, String)> = BTreeMap::new();
    for layer in crate::config::layers(sources)? {
        for (key, value) in layer.values {
            merged.insert(key, (value, layer.source.clone()));
        }
    }
    Ok(merged
        .into_iter()
        .map(|(key, (value, source))| Effective {
            value: if is_secret(&key) && !value.is_empty() {
                "[set, masked]".into()
            } else {
                value
            },
            key,
            source,
        })
        .collect())
}

/// Keys whose values are secrets (a URL may carry a password).
fn is_secret(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    key == "database.url"
        || (key.starts_with("security.") && key != "security.token_key_file")
        || (["password", "secret", "webhook", "url"]
            .iter()
            .any(|word| leaf.contains(word))
            && !key.starts_with("intercom.base_url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_names_its_layer_and_secrets_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sspm.toml");
        std::fs::write(
            &file,
            "[scheduler]\npoll_interval = \"9s\"\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        let sources = Sources {
            defaults_file: None,
            file: Some(file.clone()),
            env: vec![
                ("SSPM__LOG__LEVEL".into(), "warn".into()),
                ("DATABASE_URL".into(), "postgres://u:hunter2@db/sspm".into()),
                ("SSPM__SECURITY__TOKEN_KEY".into(), "c2VjcmV0".into()),
                ("HOME".into(), "/root".into()),
            ],
        };
        let rows = provenance(&sources).unwrap();
        let get = |k: &str| rows.iter().find(|r| r.key == k).cloned().unwrap();
        assert_eq!(get("scheduler.poll_interval").value, "9s");
        assert_eq!(
            get("scheduler.poll_interval").source,
            file.display().to_string()
        );
        assert_eq!(
            get("log.level").source,
            "environment variable SSPM__LOG__LEVEL"
        );
        assert_eq!(get("scheduler.lease").source, "built-in default");
        assert_eq!(
            get("database.url").source,
            "environment variable DATABASE_URL"
        );
        let text = format!("{rows:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("c2VjcmV0"),
            "{text}"
        );
        assert_eq!(get("security.token_key").value, "[set, masked]");
        assert_eq!(
            get("intercom.base_url.eu").value,
            "https://api.eu.intercom.io"
        );
    }
}

//! Check thresholds and domain lists: data, overridable in `[checks]` and per instance
//! (`sspm.instances.check_overrides`, same keys).

use serde::{Deserialize, Serialize};

use crate::config::{value_error, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckSettings {
    /// First scan fetches this many days of activity log.
    pub activity_backfill_days: u32,
    /// Event findings stay open this long after the event, then resolve.
    pub event_window_days: u32,
    /// Re-fetch this much before the cursor on each scan (late-arriving events).
    pub activity_overlap_minutes: u32,
    pub dormant_days: u32,
    pub long_away_days: u32,
    pub inbox_inactive_days: u32,
    pub failed_login_threshold: u32,
    pub failed_login_window_minutes: u32,
    pub failed_login_success_window_minutes: u32,
    pub impersonation_max_hours: u32,
    /// Consumer mail domains in addition to the vendored dataset (data/README.md). `*`
    /// matches one label: `gmx.*` covers gmx.de and gmx.net.
    pub personal_email_domains: Vec<String>,
    /// Domains (or patterns) never treated as consumer or disposable mail, e.g. an ISP
    /// domain your organisation really uses. Matches the domain or any parent.
    pub personal_email_domains_ignore: Vec<String>,
    pub shared_account_local_parts: Vec<String>,
    /// Check ids that are never run (reported `not_evaluated`, "disabled by configuration").
    pub disabled: Vec<String>,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            activity_backfill_days: 90,
            event_window_days: 30,
            activity_overlap_minutes: 10,
            dormant_days: 30,
            long_away_days: 30,
            inbox_inactive_days: 60,
            failed_login_threshold: 5,
            failed_login_window_minutes: 30,
            failed_login_success_window_minutes: 60,
            impersonation_max_hours: 8,
            // The vendored dataset (data/free_email_domains.txt) lists thousands of
            // providers; these patterns add what a list of names cannot say.
            personal_email_domains: [
                "gmx.*",
                "yandex.*",
                "hey.com",
                "tutanota.com",
                "tuta.com",
                "mailbox.org",
            ]
            .map(String::from)
            .to_vec(),
            personal_email_domains_ignore: Vec::new(),
            shared_account_local_parts: [
                "support", "info", "admin", "team", "sales", "help", "hello", "contact", "noreply",
                "no-reply", "billing", "office", "ops", "it", "security",
            ]
            .map(String::from)
            .to_vec(),
            disabled: Vec::new(),
        }
    }
}

impl CheckSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("checks.activity_backfill_days", self.activity_backfill_days),
            ("checks.event_window_days", self.event_window_days),
            ("checks.dormant_days", self.dormant_days),
            ("checks.long_away_days", self.long_away_days),
            ("checks.inbox_inactive_days", self.inbox_inactive_days),
            ("checks.failed_login_threshold", self.failed_login_threshold),
            (
                "checks.failed_login_window_minutes",
                self.failed_login_window_minutes,
            ),
        ] {
            if v == 0 {
                return Err(value_error(key, "must be at least 1"));
            }
        }
        if self.activity_backfill_days > 365 * 5 {
            return Err(value_error(
                "checks.activity_backfill_days",
                "must be at most 1825",
            ));
        }
        Ok(())
    }

    /// Applies a per-instance JSON object of overrides (same keys as `[checks]`).
    pub fn with_overrides(&self, overrides: &serde_json::Value) -> Result<Self, String> {
        let empty = overrides.as_object().is_none_or(|o| o.is_empty());
        if empty {
            return Ok(self.clone());
        }
        let mut base = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let (Some(base), Some(over)) = (base.as_object_mut(), overrides.as_object()) {
            for (k, v) in over {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).map_err(|e| format!("invalid check override: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_given_keys_and_reject_unknown() {
        let base = CheckSettings::default();
        let o = base
            .with_overrides(&serde_json::json!({"dormant_days": 45}))
            .unwrap();
        assert_eq!(o.dormant_days, 45);
        assert_eq!(o.long_away_days, base.long_away_days);
        assert!(base
            .with_overrides(&serde_json::json!({"dormant_dayz": 1}))
            .is_err());
    }
}

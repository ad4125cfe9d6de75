//! Per-instance check overrides (`sspm.instances.check_overrides`) as people type them:
//! `key=value` on the CLI, one field per key in the console. Numbers are whole numbers,
//! lists are comma-separated; an empty value means "back to the default". The result is
//! checked the way a scan applies it ([`CheckSettings::with_overrides`], then
//! [`CheckSettings::validate`]), so what is stored is what the next scan uses.

use serde_json::{Map, Value};

use super::settings::CheckSettings;
use crate::config::ConfigError;

/// What a tunable key holds, from its type in [`CheckSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    List,
}

/// One key of `[checks]` that an instance can override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunable {
    pub key: String,
    pub kind: Kind,
}

/// Every overridable key, by name: read from [`CheckSettings`]'s serialized form, so a
/// new setting is tunable without a second list to keep in step.
pub fn tunables() -> Vec<Tunable> {
    let Ok(Value::Object(fields)) = serde_json::to_value(CheckSettings::default()) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(key, v)| Tunable {
            kind: if v.is_array() {
                Kind::List
            } else {
                Kind::Number
            },
            key,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("unknown check setting {key:?}: use one of {known}")]
    UnknownKey { key: String, known: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error(
        "{given:?} is not KEY=VALUE: write e.g. dormant_days=45 (or --clear KEY for the default)"
    )]
    NotAssignment { given: String },
}

impl OverrideError {
    /// The key the error is about (a form field), when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            OverrideError::UnknownKey { key, .. } | OverrideError::Invalid { key, .. } => Some(key),
            OverrideError::NotAssignment { .. } => None,
        }
    }

    /// The message without the key in front, for a form's field.
    pub fn reason(&self) -> String {
        match self {
            OverrideError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// One change: `key` set to what `value` says, or back to the default when `value` is
/// None or blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub key: String,
    pub value: Option<String>,
}

impl std::str::FromStr for Edit {
    type Err = OverrideError;

    /// `key=value` (the CLI's form); `key=` is the default again.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| OverrideError::NotAssignment {
                given: s.to_string(),
            })?;
        Ok(Edit {
            key: key.trim().to_string(),
            value: Some(value.to_string()),
        })
    }
}

fn known_keys() -> String {
    tunables()
        .into_iter()
        .map(|t| t.key)
        .collect::<Vec<_>>()
        .join(", ")
}

fn invalid(key: &str, message: impl Into<String>) -> OverrideError {
    OverrideError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The stored value of `raw` for a key of `kind`; None for the default.
fn parse_value(key: &str, kind: Kind, raw: &str) -> Result<Option<Value>, OverrideError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match kind {
        Kind::Number => raw
            .parse::<u32>()
            .map(|n| Some(Value::from(n)))
            .map_err(|_| {
                invalid(
                    key,
                    format!("{raw:?} is not a whole number (0 to {})", u32::MAX),
                )
            }),
        Kind::List => {
            let items: Vec<String> = raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if items.is_empty() {
                return Ok(None);
            }
            // A mistyped check id would silently disable nothing.
            if key == "disabled" {
                if let Some(unknown) = items.iter().find(|id| super::meta(id).is_none()) {
                    return Err(invalid(
                        key,
                        format!("{unknown:?} is not a check id (see `intercom-sspm checks`)"),
                    ));
                }
            }
            Ok(Some(Value::from(items)))
        }
    }
}

/// The overrides after `edits` on `current`, checked against `base` (the deployment's
/// `[checks]`) as a scan applies them. Clearing a key that is stored but unknown (written
/// by SQL, say) is allowed, so such a key can always be removed.
pub fn apply(
    base: &CheckSettings,
    current: &Value,
    edits: &[Edit],
) -> Result<Map<String, Value>, OverrideError> {
    let tunables = tunables();
    let mut out = current.as_object().cloned().unwrap_or_default();
    for edit in edits {
        let raw = edit.value.as_deref().unwrap_or("");
        let Some(t) = tunables.iter().find(|t| t.key == edit.key) else {
            if raw.trim().is_empty() && out.remove(&edit.key).is_some() {
                continue;
            }
            return Err(OverrideError::UnknownKey {
                key: edit.key.clone(),
                known: known_keys(),
            });
        };
        match parse_value(&t.key, t.kind, raw)? {
            Some(v) => out.insert(t.key.clone(), v),
            None => out.remove(&t.key),
        };
    }
    // Each stored key on its own first, so a bad one (from SQL) is named.
    for (k, v) in &out {
        let one = Value::Object(Map::from_iter([(k.clone(), v.clone())]));
        if let Err(e) = base.with_overrides(&one) {
            return Err(if tunables.iter().any(|t| &t.key == k) {
                invalid(k, format!("the stored value {v} is not valid: {e}"))
            } else {
                OverrideError::UnknownKey {
                    key: k.clone(),
                    known: known_keys(),
                }
            });
        }
    }
    let merged = base
        .with_overrides(&Value::Object(out.clone()))
        .map_err(|e| invalid("general", e))?;
    merged.validate().map_err(|e| match e {
        ConfigError::Value { key, message } => {
            let key = key.strip_prefix("checks.").unwrap_or(&key).to_string();
            OverrideError::Invalid { key, message }
        }
        other => invalid("general", other.to_string()),
    })?;
    Ok(out)
}

/// A stored or default value as it is typed: a number, or a comma-separated list.
pub fn display(v: &Value) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Each tunable key with the deployment's value and the instance's override (None when
/// it uses the deployment's).
pub fn rows(base: &CheckSettings, current: &Value) -> Vec<(Tunable, String, Option<String>)> {
    let defaults = serde_json::to_value(base).unwrap_or_default();
    tunables()
        .into_iter()
        .map(|t| {
            let default = defaults.get(&t.key).map(display).unwrap_or_default();
            let value = current.get(&t.key).map(display);
            (t, default, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(key: &str, value: &str) -> Edit {
        Edit {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    #[test]
    fn every_setting_is_tunable_with_its_kind() {
        let t = tunables();
        assert_eq!(t.len(), 14);
        assert!(t.contains(&Tunable {
            key: "dormant_days".into(),
            kind: Kind::Number
        }));
        assert!(t.contains(&Tunable {
            key: "disabled".into(),
            kind: Kind::List
        }));
    }

    #[test]
    fn edits_set_clear_and_keep_other_keys() {
        let base = CheckSettings::default();
        let current = json!({"long_away_days": 10, "inbox_inactive_days": 90});
        let out = apply(
            &base,
            &current,
            &[
                edit("dormant_days", " 45 "),
                edit("inbox_inactive_days", ""),
                edit("shared_account_local_parts", "support, ops,,"),
            ],
        )
        .unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"long_away_days": 10, "dormant_days": 45,
                   "shared_account_local_parts": ["support", "ops"]})
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = CheckSettings::default();
        let none = json!({});
        for (e, key, text) in [
            (edit("dormant_dayz", "3"), "dormant_dayz", "use one of"),
            (edit("dormant_days", "soon"), "dormant_days", "whole number"),
            (edit("dormant_days", "-1"), "dormant_days", "whole number"),
            (edit("dormant_days", "0"), "dormant_days", "at least 1"),
            (
                edit("activity_backfill_days", "4000"),
                "activity_backfill_days",
                "at most 1825",
            ),
            (
                edit("disabled", "admin_dormant, nope"),
                "disabled",
                "\"nope\"",
            ),
        ] {
            let err = apply(&base, &none, std::slice::from_ref(&e)).unwrap_err();
            assert_eq!(err.key(), Some(key), "{e:?}");
            assert!(err.to_string().contains(text), "{e:?}: {err}");
        }
        assert!(matches!(
            "dormant_days".parse::<Edit>(),
            Err(OverrideError::NotAssignment { .. })
        ));
        assert_eq!("a=b=c".parse::<Edit>().unwrap(), edit("a", "b=c"));
    }

    #[test]
    fn stored_junk_is_named_and_an_unknown_stored_key_can_be_cleared() {
        let base = CheckSettings::default();
        let junk = json!({"dormant_days": "thirty", "legacy": 1});
        let err = apply(&base, &junk, &[]).unwrap_err();
        assert_eq!(err.key(), Some("dormant_days"));
        let out = apply(
            &base,
            &junk,
            &[
                Edit {
                    key: "legacy".into(),
                    value: None,
                },
                edit("dormant_days", "31"),
            ],
        )
        .unwrap();
        assert_eq!(Value::Object(out), json!({"dormant_days": 31}));
    }

    #[test]
    fn rows_show_the_deployment_default_and_the_override() {
        let base = CheckSettings {
            dormant_days: 20,
            ..CheckSettings::default()
        };
        let rows = rows(&base, &json!({"dormant_days": 45}));
        let d = rows.iter().find(|r| r.0.key == "dormant_days").unwrap();
        assert_eq!((d.1.as_str(), d.2.as_deref()), ("20", Some("45")));
        let s = rows
            .iter()
            .find(|r| r.0.key == "shared_account_local_parts")
            .unwrap();
        assert!(s.1.starts_with("support, info"));
        assert_eq!(s.2, None);
    }
}

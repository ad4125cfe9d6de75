//! `admin_2fa_disabled`: one finding per `admin_two_factor_auth_change` event that turns
//! 2FA off, resource `event:<id>`. The metadata shape is undocumented (API.md §3.2:
//! `before`/`after` are objects per the schema but strings in the examples), so the
//! direction is read leniently; when it cannot be read the event is still reported, at
//! medium, as "review".

use serde_json::Value;

use super::super::catalog::CheckMeta;
use super::super::context::Ctx;
use super::super::types::{Severity, Verdict};
use super::{actor, available, coverage_note, event_finding, recent_of, when};

const TWO_FACTOR_CHANGE: &str = "admin_two_factor_auth_change";

/// Keys that may hold the 2FA state inside an object-valued `before`/`after`.
const STATE_KEYS: &[&str] = &[
    "enabled",
    "two_factor_auth_enabled",
    "two_factor_enabled",
    "two_factor_auth",
    "two_factor",
    "2fa",
    "mfa",
    "status",
    "state",
    "value",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    TurnedOn,
    TurnedOff,
    Unknown,
}

/// A 2FA state from a JSON value: booleans, words like "enabled"/"off", 0/1, or an
/// object carrying one of those under a known key (or as its only value).
fn state(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "enabled" | "enable" | "on" | "true" | "active" | "yes" | "1" | "required" => {
                Some(true)
            }
            "disabled" | "disable" | "off" | "false" | "inactive" | "no" | "0" | "none"
            | "not_required" => Some(false),
            _ => None,
        },
        Value::Object(map) => STATE_KEYS
            .iter()
            .find_map(|k| map.get(*k).and_then(state))
            .or_else(|| match map.values().collect::<Vec<_>>().as_slice() {
                [only] => state(only),
                _ => None,
            }),
        _ => None,
    }
}

fn direction(metadata: &Value) -> Direction {
    let after = metadata
        .get("after")
        .and_then(state)
        .or_else(|| metadata.get("enabled").and_then(state))
        .or_else(|| changes_after(metadata));
    // `before` alone says nothing about the outcome; true -> true is no change, not a finding.
    match after {
        Some(false) => Direction::TurnedOff,
        Some(true) => Direction::TurnedOn,
        None => Direction::Unknown,
    }
}

/// `metadata.changes.{<2fa-ish setting>}.after`, the shape of settings-change events.
fn changes_after(metadata: &Value) -> Option<bool> {
    metadata
        .get("changes")?
        .as_object()?
        .iter()
        .find(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains("two_factor") || k.contains("2fa") || k.contains("mfa")
        })
        .and_then(|(_, change)| change.get("after").and_then(state))
}

pub(in crate::checks) fn admin_2fa_disabled(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let (events, covered_from) = match available(ctx) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let findings = recent_of(ctx, events, &[TWO_FACTOR_CHANGE])
        .into_iter()
        .filter_map(|ev| {
            let (severity, title) = match direction(&ev.metadata.value()) {
                Direction::TurnedOn => return None,
                Direction::TurnedOff => (
                    m.severity,
                    format!(
                        "Two-factor authentication turned off by {} ({})",
                        actor(ev),
                        when(ev.created_at)
                    ),
                ),
                Direction::Unknown => (
                    Severity::Medium,
                    format!(
                        "Review two-factor authentication change by {} ({}): direction unknown",
                        actor(ev),
                        when(ev.created_at)
                    ),
                ),
            };
            Some(event_finding(ev, severity, title))
        })
        .collect();
    Verdict::from_findings(findings, coverage_note(ctx, covered_from))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use serde_json::json;

    use super::super::super::testutil::*;
    use super::super::super::types::CheckStatus;
    use super::*;

    #[test]
    fn reads_direction_from_many_shapes() {
        let off = [
            json!({"before": "enabled", "after": "disabled"}),
            json!({"before": true, "after": false}),
            json!({"before": {"two_factor_auth": "on"}, "after": {"two_factor_auth": "off"}}),
            json!({"after": {"enabled": false}}),
            json!({"enabled": false}),
            json!({"changes": {"two_factor_auth_enabled": {"before": true, "after": false}}}),
        ];
        for m in off {
            assert_eq!(direction(&m), Direction::TurnedOff, "{m}");
        }
        let on = [
            json!({"before": "disabled", "after": "enabled"}),
            json!({"enabled": true}),
            json!({"after": {"x": 1}}),
        ];
        for m in on {
            assert_eq!(direction(&m), Direction::TurnedOn, "{m}");
        }
        let unknown = [
            Value::Null,
            json!({}),
            json!({"before": "enabled"}),
            json!({"before": "x", "after": "y"}),
            json!({"after": {"a": 1, "b": 2}}),
        ];
        for m in unknown {
            assert_eq!(direction(&m), Direction::Unknown, "{m}");
        }
    }

    #[test]
    fn turning_off_is_high_unknown_is_medium_review_turning_on_is_fine() {
        let mut snap = snapshot();
        let at = snap.now - Duration::hours(2);
        let mut off = event("off", TWO_FACTOR_CHANGE, "2", at);
        off.metadata = json!({"before": "enabled", "after": "disabled"}).into();
        let mut on = event("on", TWO_FACTOR_CHANGE, "2", at);
        on.metadata = json!({"before": false, "after": true}).into();
        let unknown = event("unk", TWO_FACTOR_CHANGE, "2", at);
        set_events(&mut snap, vec![off, on, unknown]);

        let o = run("admin_2fa_disabled", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["event:off", "event:unk"]);
        assert_eq!(o.findings[0].severity, Severity::High);
        assert!(o.findings[0].title.contains("turned off"));
        assert_eq!(o.findings[1].severity, Severity::Medium);
        assert!(o.findings[1].title.contains("Review"));

        set_events(&mut snap, vec![event("on2", TWO_FACTOR_CHANGE, "2", at)]);
        if let super::super::super::ActivityData::Available { events, .. } = &mut snap.activity {
            events[0].metadata = json!({"enabled": true}).into();
        }
        assert_eq!(run("admin_2fa_disabled", &snap).status, CheckStatus::Pass);
    }
}

//! Rules, pure: which of a scan's transitions a channel wants to hear about.
//!
//! A transition into `muted`, or out of `muted` into `resolved`, is never sent: a muted
//! finding is an accepted risk. `muted -> open` (the exception ended) counts as opened.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::checks::Severity;
use crate::status::{FindingStatus, InstanceStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Opened,
    Reopened,
    Resolved,
    /// The instance's scan health changed (`ok -> unauthorized`, `ip_not_allowed`, ...).
    Health,
}

impl Event {
    pub const ALL: [Event; 4] = [
        Event::Opened,
        Event::Reopened,
        Event::Resolved,
        Event::Health,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Reopened => "reopened",
            Event::Resolved => "resolved",
            Event::Health => "health",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The alert a finding transition implies, if any.
    pub fn of_transition(from: Option<FindingStatus>, to: FindingStatus) -> Option<Event> {
        use FindingStatus::{Muted, Open, Resolved};
        match (from, to) {
            (None | Some(Muted), Open) => Some(Event::Opened),
            (Some(Resolved), Open) => Some(Event::Reopened),
            (Some(Open), Resolved) => Some(Event::Resolved),
            // Into muted alerts nobody; muted -> resolved was never alerted as open;
            // a status cannot move to itself.
            (_, Muted) | (None | Some(Muted) | Some(Resolved), Resolved) | (Some(Open), Open) => {
                None
            }
        }
    }
}

/// `opened,reopened` style lists, as `--on` takes them.
pub fn parse_events(list: &str) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let e = Event::parse(part).ok_or_else(|| {
            format!("unknown event {part:?}: use opened, reopened, resolved, health")
        })?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    if out.is_empty() {
        return Err("choose at least one event: opened, reopened, resolved, health".into());
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub min_severity: Severity,
    pub events: Vec<Event>,
    /// Empty = every check.
    pub checks: Vec<String>,
    pub exclude_checks: Vec<String>,
    /// Instance names; empty = every instance.
    pub instances: Vec<String>,
    /// Cron (optionally `CRON_TZ=Zone ...`) for a digest; None = no digest.
    pub digest: Option<String>,
}

impl Default for Rules {
    /// Opened and reopened findings of high severity and above, plus health changes.
    fn default() -> Self {
        Rules {
            min_severity: Severity::High,
            events: vec![Event::Opened, Event::Reopened, Event::Health],
            checks: Vec::new(),
            exclude_checks: Vec::new(),
            instances: Vec::new(),
            digest: None,
        }
    }
}

pub fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::from_str(s.trim())
        .map_err(|_| format!("unknown severity {s:?}: use critical, high, medium, low or info"))
}

impl Rules {
    pub fn wants_instance(&self, name: &str) -> bool {
        self.instances.is_empty() || self.instances.iter().any(|i| i.eq_ignore_ascii_case(name))
    }

    pub fn wants_health(&self) -> bool {
        self.events.contains(&Event::Health)
    }

    /// Whether a finding transition of `check_id` at `severity` is sent.
    pub fn wants_finding(&self, event: Event, check_id: &str, severity: Severity) -> bool {
        self.events.contains(&event)
            && rank(severity) <= rank(self.min_severity)
            && (self.checks.is_empty() || self.checks.iter().any(|c| c == check_id))
            && !self.exclude_checks.iter().any(|c| c == check_id)
    }
}

/// 0 = critical .. 4 = info.
pub fn rank(s: Severity) -> usize {
    Severity::ALL.iter().position(|x| *x == s).unwrap_or(4)
}

/// Whether an instance status change is worth a health alert. `pending -> ok` is the
/// first scan succeeding, which the first-scan summary already says.
pub fn is_health_change(before: InstanceStatus, after: InstanceStatus) -> bool {
    before != after && !(before == InstanceStatus::Pending && after == InstanceStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_map_to_events_and_muted_sends_nothing() {
        use FindingStatus::{Muted, Open, Resolved};
        assert_eq!(Event::of_transition(None, Open), Some(Event::Opened));
        assert_eq!(
            Event::of_transition(Some(Resolved), Open),
            Some(Event::Reopened)
        );
        assert_eq!(
            Event::of_transition(Some(Open), Resolved),
            Some(Event::Resolved)
        );
        assert_eq!(Event::of_transition(None, Muted), None);
        assert_eq!(Event::of_transition(Some(Open), Muted), None);
        assert_eq!(Event::of_transition(Some(Muted), Resolved), None);
        assert_eq!(Event::of_transition(Some(Muted), Open), Some(Event::Opened));
    }

    #[test]
    fn default_rules_want_high_and_above_opened() {
        let r = Rules::default();
        assert!(r.wants_finding(Event::Opened, "x", Severity::Critical));
        assert!(r.wants_finding(Event::Reopened, "x", Severity::High));
        assert!(!r.wants_finding(Event::Opened, "x", Severity::Medium));
        assert!(!r.wants_finding(Event::Resolved, "x", Severity::Critical));
        assert!(r.wants_health());
    }

    #[test]
    fn check_and_instance_filters() {
        let r = Rules {
            min_severity: Severity::Info,
            checks: vec!["a".into(), "b".into()],
            exclude_checks: vec!["b".into()],
            instances: vec!["Acme".into()],
            ..Rules::default()
        };
        assert!(r.wants_finding(Event::Opened, "a", Severity::Info));
        assert!(!r.wants_finding(Event::Opened, "b", Severity::Critical));
        assert!(!r.wants_finding(Event::Opened, "c", Severity::Critical));
        assert!(r.wants_instance("acme"));
        assert!(!r.wants_instance("globex"));
    }

    #[test]
    fn event_lists_parse_with_clear_errors() {
        assert_eq!(
            parse_events("opened, resolved,opened").unwrap(),
            vec![Event::Opened, Event::Resolved]
        );
        assert!(parse_events("closed").unwrap_err().contains("opened"));
        assert!(parse_events("").is_err());
    }

    #[test]
    fn health_changes() {
        use InstanceStatus::*;
        assert!(is_health_change(Ok, Unauthorized));
        assert!(is_health_change(Pending, IpNotAllowed));
        assert!(!is_health_change(Pending, Ok));
        assert!(!is_health_change(Ok, Ok));
    }
}

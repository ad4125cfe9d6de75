//! Everything one scan collected, plus what earlier scans left behind: the only input of
//! the checks.

use foldhash::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::intercom::models::{ActivityLog, Admin, Me};
use crate::intercom::IntercomError;
use crate::Region;

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub now: DateTime<Utc>,
    pub onboarded_region: Region,
    /// The Intercom-Version we sent (roles exist from "2.16").
    pub api_version: String,
    pub me: Result<Me, IntercomError>,
    /// Not fetched when /me failed: use Err with the same error.
    pub admins: Result<Vec<Admin>, IntercomError>,
    pub activity: ActivityData,
    /// Extra-scope probes (token_least_privilege); empty + probes_enabled=false means disabled by config.
    pub probes: Vec<Probe>,
    pub probes_enabled: bool,
    /// Instance's allowed email domains; empty = the token owner's (/me email) domain.
    pub allowed_domains: Vec<String>,
    /// Valid (unexpired) manual-control attestations: control ids.
    pub attestations: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ActivityData {
    /// Every stored event of the instance in the look-back window (de-duplicated, any order),
    /// and the start of the window fetched without gaps ("history covers N days" iff
    /// covered_from <= now - N days).
    Available {
        events: Vec<ActivityEvent>,
        covered_from: DateTime<Utc>,
    },
    /// The endpoint refused the token: NotPermitted (scope) or PlanRestricted.
    Refused(IntercomError),
    /// Fetching failed otherwise (5xx, decode, ...): A checks are `error`, not pass.
    Failed(IntercomError),
    /// Not attempted (e.g. /me failed first).
    NotFetched,
}

impl ActivityData {
    /// Whole days of gap-free history before `now` (0 when nothing is available).
    pub fn covered_days(&self, now: DateTime<Utc>) -> i64 {
        match self {
            ActivityData::Available { covered_from, .. } => (now - *covered_from).num_days().max(0),
            _ => 0,
        }
    }

    /// "History covers N days" (CHECKS.md): the fetched window reaches N days back.
    pub fn covers_days(&self, now: DateTime<Utc>, days: u32) -> bool {
        match self {
            ActivityData::Available { covered_from, .. } => {
                *covered_from <= now - Duration::days(i64::from(days))
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEvent {
    /// Unique per event, so not shared; a boxed `str` (16 bytes, no spare capacity) rather
    /// than a `String` for the ~70,000 events a large re-scan holds.
    pub id: Box<str>,
    pub activity_type: SharedText,
    pub performed_by_id: Option<SharedText>,
    pub performed_by_email: Option<SharedText>,
    pub ip: Option<SharedText>,
    pub created_at: DateTime<Utc>,
    pub description: Option<Box<str>>,
    pub metadata: EventMetadata,
}

/// Text that many events repeat (type, performer, IP): events read back together share
/// one allocation per distinct value ([`Interner`]). A large workspace's re-scan holds
/// ~70,000 events of ~20,000 teammates through its checks; a `String` per field was
/// ~12 MB of the scan's peak (benches/README.md, `big_workspace_rescan`). Compares,
/// hashes, prints and serialises as the text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedText(std::sync::Arc<str>);

impl SharedText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SharedText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SharedText {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedText {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for SharedText {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl PartialEq<&str> for SharedText {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for SharedText {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<SharedText> for &str {
    fn eq(&self, other: &SharedText) -> bool {
        *self == &*other.0
    }
}

impl std::fmt::Debug for SharedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for SharedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for SharedText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Hands out one [`SharedText`] per distinct value while a batch of events is read. A
/// `HashSet` local to the read is all it takes: a process-wide interner (such as
/// `internment`'s) would keep every value of every scan alive behind a lock.
#[derive(Default)]
pub struct Interner(HashSet<SharedText>);

impl Interner {
    pub fn intern(&mut self, s: String) -> SharedText {
        if let Some(shared) = self.0.get(s.as_str()) {
            return shared.clone();
        }
        let shared = SharedText::from(s);
        self.0.insert(shared.clone());
        shared
    }
}

/// An event's `metadata` kept as compact JSON text and parsed on demand by the few checks
/// that read it. A parsed `serde_json::Value` costs a B-tree node (~640 bytes) per object,
/// several times the text, and most events' metadata is only stored: holding 200k events
/// of a large workspace as `Value`s exceeded the daemon's memory budget (benches/README.md).
#[derive(Clone, Default)]
pub struct EventMetadata(Option<Box<str>>);

impl EventMetadata {
    /// The parsed metadata; `Null` when absent.
    pub fn value(&self) -> serde_json::Value {
        self.0
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The JSON text (`null` when absent), as stored in `sspm.activity_events.metadata`.
    pub fn json_text(&self) -> &str {
        self.0.as_deref().unwrap_or("null")
    }

    /// From JSON text (e.g. read back from Postgres).
    pub fn from_json_text(text: Option<String>) -> Self {
        match text {
            Some(t) if t != "null" => Self(Some(t.into_boxed_str())),
            _ => Self(None),
        }
    }
}

impl From<serde_json::Value> for EventMetadata {
    fn from(v: serde_json::Value) -> Self {
        Self::from(&v)
    }
}

impl From<&serde_json::Value> for EventMetadata {
    fn from(v: &serde_json::Value) -> Self {
        if v.is_null() {
            Self(None)
        } else {
            Self(Some(v.to_string().into_boxed_str()))
        }
    }
}

impl PartialEq for EventMetadata {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.value() == other.value()
    }
}

impl std::fmt::Debug for EventMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.json_text())
    }
}

impl ActivityEvent {
    /// `None` when the log has no id or no usable `created_at`: such an event can neither
    /// be de-duplicated nor placed in a window, so it cannot support any finding.
    pub fn from_log(log: &ActivityLog) -> Option<Self> {
        let id = non_empty(log.id.as_deref())?;
        let created_at = DateTime::from_timestamp(log.created_at?, 0)?;
        let by = log.performed_by.as_ref();
        Some(Self {
            id: id.into_boxed_str(),
            activity_type: non_empty(log.activity_type.as_deref())
                .map_or_else(|| "unknown".into(), SharedText::from),
            performed_by_id: by.and_then(|b| non_empty(b.id.as_deref())).map(Into::into),
            performed_by_email: by
                .and_then(|b| non_empty(b.email.as_deref()))
                .map(Into::into),
            ip: by.and_then(|b| non_empty(b.ip.as_deref())).map(Into::into),
            created_at,
            description: non_empty(log.activity_description.as_deref()).map(String::into_boxed_str),
            metadata: log
                .metadata
                .as_ref()
                .map(EventMetadata::from)
                .unwrap_or_default(),
        })
    }

    /// Whether `admin` performed this event: same id, or (ids missing on either side or
    /// differing in form) the same email, case-insensitively.
    pub fn performed_by(&self, admin: &Admin) -> bool {
        let same_id = matches!((&self.performed_by_id, &admin.id), (Some(a), Some(b)) if a == b);
        let same_email = matches!(
            (&self.performed_by_email, &admin.email),
            (Some(a), Some(b)) if a.trim().eq_ignore_ascii_case(b.trim())
        );
        same_id || same_email
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Human name of the capability, e.g. "Read tags".
    pub capability: String,
    /// e.g. "/tags".
    pub endpoint: String,
    pub outcome: ProbeOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    /// HTTP 200: the token holds the capability.
    Allowed,
    /// Refused for scope or plan: the token does not hold it.
    Refused,
    /// Anything else: unknown.
    Error(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreviousState {
    /// Whether the instance has at least one earlier completed scan.
    pub has_completed_scan: bool,
    /// Admin ids present in the previous completed scan.
    pub previous_admin_ids: HashSet<String>,
    /// Inventory per admin id from earlier scans.
    pub admins: HashMap<String, AdminHistory>,
    /// Stored events of the look-back window that were not loaded as events, aggregated.
    pub earlier_activity: EarlierActivity,
}

/// The latest activity (failed logins excluded) per performer id and per performer email
/// (trimmed, ASCII lower-cased) among the stored events of the look-back window that a
/// scan does not load as events: the inactivity checks need no more of them than this.
/// A re-scan loads only the events the event checks read (`checks.event_window_days`,
/// reaching back to the start of a failed-login run that crosses it) and this aggregate for
/// the rest, instead of every event of the look-back window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EarlierActivity {
    pub by_id: HashMap<String, DateTime<Utc>>,
    pub by_email: HashMap<String, DateTime<Utc>>,
}

impl EarlierActivity {
    /// Adds one stored (performer id, performer email, latest activity) group.
    pub fn add(&mut self, id: Option<String>, email: Option<&str>, at: DateTime<Utc>) {
        if let Some(id) = id {
            let t = self.by_id.entry(id).or_insert(at);
            *t = (*t).max(at);
        }
        if let Some(email) = email {
            let t = self
                .by_email
                .entry(email.trim().to_ascii_lowercase())
                .or_insert(at);
            *t = (*t).max(at);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminHistory {
    pub first_seen_at: DateTime<Utc>,
    pub away_since: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercom::models::{ActivityLogPage, PerformedBy};

    /// Equal values read in one batch share one allocation; shared text compares,
    /// prints and serialises as the plain text.
    #[test]
    fn interned_text_is_shared_and_behaves_as_its_text() {
        let mut interner = Interner::default();
        let a = interner.intern("bo@acme.com".to_string());
        let b = interner.intern(String::from("bo@acme.com"));
        let c = interner.intern("al@acme.com".to_string());
        assert!(std::ptr::eq(a.as_str(), b.as_str()), "one allocation");
        assert!(!std::ptr::eq(a.as_str(), c.as_str()));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, "bo@acme.com");
        assert_eq!("bo@acme.com", a);
        let owned = String::from("bo@acme.com");
        assert_eq!(a, owned);
        assert_eq!(format!("{a} {a:?}"), r#"bo@acme.com "bo@acme.com""#);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!("bo@acme.com")
        );
        assert_eq!(SharedText::from("x"), SharedText::from("x".to_string()));
    }

    #[test]
    fn from_log_keeps_fields_and_rejects_unplaceable_events() {
        let log = ActivityLog {
            id: Some("e1".into()),
            created_at: Some(1_734_537_900),
            activity_type: None,
            performed_by: Some(PerformedBy {
                id: Some("7".into()),
                email: Some("a@x.com".into()),
                ip: Some("".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ev = ActivityEvent::from_log(&log).unwrap();
        assert_eq!(ev.activity_type, "unknown");
        assert_eq!(ev.performed_by_id.as_deref(), Some("7"));
        assert_eq!(ev.ip, None);
        assert_eq!(ev.metadata.value(), serde_json::Value::Null);
        assert_eq!(ev.created_at.timestamp(), 1_734_537_900);

        let no_id = ActivityLog {
            id: None,
            ..log.clone()
        };
        assert!(ActivityEvent::from_log(&no_id).is_none());
        let no_time = ActivityLog {
            created_at: None,
            ..log
        };
        assert!(ActivityEvent::from_log(&no_time).is_none());
    }

    #[test]
    fn fixture_page_converts_completely() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/intercom/activity_logs_page1.json"
        );
        let page: ActivityLogPage =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let events: Vec<_> = page
            .activity_logs
            .iter()
            .filter_map(ActivityEvent::from_log)
            .collect();
        assert_eq!(events.len(), page.activity_logs.len());
        assert_eq!(events[0].activity_type, "admin_login_success");
        assert_eq!(
            events[0].metadata.value()["sign_in_method"],
            "email_password"
        );
    }

    #[test]
    fn performed_by_matches_id_or_email_case_insensitively() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ev = ActivityEvent {
            id: "e".into(),
            activity_type: "admin_logout".into(),
            performed_by_id: Some("7".into()),
            performed_by_email: Some("Bo@Acme.com".into()),
            ip: None,
            created_at: now,
            description: None,
            metadata: EventMetadata::default(),
        };
        let admin = |id: Option<&str>, email: Option<&str>| Admin {
            id: id.map(str::to_string),
            email: email.map(str::to_string),
            ..Default::default()
        };
        assert!(ev.performed_by(&admin(Some("7"), None)));
        assert!(ev.performed_by(&admin(Some("8"), Some("bo@acme.com"))));
        assert!(!ev.performed_by(&admin(Some("8"), Some("al@acme.com"))));
        assert!(!ev.performed_by(&admin(None, None)));
    }

    #[test]
    fn coverage_is_measured_from_the_fetched_window() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let data = ActivityData::Available {
            events: Vec::new(),
            covered_from: now - Duration::days(30),
        };
        assert!(data.covers_days(now, 30));
        assert!(!data.covers_days(now, 31));
        assert_eq!(data.covered_days(now), 30);
        assert!(!ActivityData::NotFetched.covers_days(now, 1));
    }
}

//! The scenario document (JSON): workspaces with their teammates, activity events, tokens
//! and scopes, and the faults to inject. The format is described in docs/SIMULATOR.md.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::faults::FaultSpec;
use crate::Region;

/// Scope names the simulator checks. Tokens may list others; they are simply never needed.
pub mod scopes {
    pub const READ_ADMINS: &str = "read_admins";
    pub const READ_ADMIN_ACTIVITY_LOGS: &str = "read_admin_activity_logs";
    pub const READ_TAGS: &str = "read_tags";
    pub const MANAGE_IP_ALLOWLIST: &str = "manage_ip_allowlist";
    pub const READ_TEAMS: &str = "read_teams";
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario {origin}: invalid at `{at}`: {reason}")]
    Parse {
        origin: String,
        at: String,
        reason: String,
    },
    #[error("scenario: {0}")]
    Invalid(String),
    #[error("scenario: no workspace {0:?}")]
    UnknownWorkspace(String),
    #[error("scenario: no such token")]
    UnknownToken,
}

/// A whole simulated world: every workspace the simulator serves, in all regions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub workspaces: Vec<Workspace>,
}

/// One Intercom workspace ("app").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// `app.id_code`; unique in the scenario.
    pub id_code: String,
    pub name: String,
    pub region: Region,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// `app.created_at`, Unix seconds.
    #[serde(default = "default_app_created_at")]
    pub created_at: i64,
    #[serde(default)]
    pub identity_verification: bool,
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    #[serde(default)]
    pub admins: Vec<AdminSpec>,
    /// Any order; served newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<TeamSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub ip_allowlist: IpAllowlistSpec,
    #[serde(default)]
    pub pagination: PaginationSpec,
    /// How tokens of this workspace are refused a scope they lack (tokens may override).
    #[serde(default)]
    pub refusal: Refusal,
    #[serde(default)]
    pub rate_limit: RateLimitSpec,
    /// Boxed: most workspaces have none, and a generated world has 100k workspaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Box<FaultSpec>>,
}

fn default_timezone() -> String {
    "America/Los_Angeles".into()
}

fn default_app_created_at() -> i64 {
    1_600_000_000
}

/// An access token of a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    pub token: String,
    /// E.g. `read_admins`, `read_admin_activity_logs`, `read_tags` (see [`scopes`]).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The teammate the token acts for (`/me`); default: the workspace's first admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_admin_id: Option<String>,
    /// A `/me` teammate that is not (or no longer) in `/admins`; wins over `owner_admin_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Box<AdminSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Revoked from the start: every call gets 401 `token_revoked`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Box<FaultSpec>>,
}

impl TokenSpec {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The error a token gets for an endpoint whose scope it lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// 401 `token_unauthorized` "Not authorized to access resource" (the live behaviour).
    #[default]
    TokenUnauthorized,
    /// 403 `forbidden` "You do not have the required scope (...)" (newer spec examples).
    Forbidden,
    /// 403 `api_plan_restricted` "This feature is not yet available to your app".
    ApiPlanRestricted,
}

/// A teammate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// Numeric string, as the API sends it.
    pub id: String,
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub away_mode_enabled: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub away_mode_reassign: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away_status_reason_id: Option<i64>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub has_inbox_seat: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub team_ids: Vec<i64>,
    /// Served (with `display_avatar=true`) as `{"image_url": ...}`; null when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Served from API 2.16 on; absent when the teammate has no role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleSpec>,
    /// `admin.team_priority_level` (spec: nullable object, from 2.8); served as `null` when
    /// not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_priority_level: Option<TeamPriorityLevelSpec>,
    /// Only on `/me`; null when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `components.schemas.team_priority_level`: both lists are nullable in the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamPriorityLevelSpec {
    #[serde(default)]
    pub primary_team_ids: Option<Vec<i64>>,
    #[serde(default)]
    pub secondary_team_ids: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub id: String,
    pub name: String,
}

/// One activity-log entry. Give `created_at` (Unix seconds) or `ago` ("3d 4h": relative to
/// when the simulator starts, so a checked-in scenario never goes stale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub id: String,
    pub activity_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ago: Option<Duration>,
    /// Admin id of `performed_by`.
    pub performed_by: String,
    /// Default: the email of that admin in this workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performed_by_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Kept as JSON text (see [`RawJson`]); `null` or absent is served as `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RawJson>,
    /// Default: generated from the performer's name and the activity type when served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub admin_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution_method: Option<String>,
}

/// `GET /ip_allowlist` content (needs `manage_ip_allowlist`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpAllowlistSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
}

/// Which `pages.next` shape the activity log sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextStyle {
    /// A full URL on the same host (the live API).
    #[default]
    Url,
    /// The spec's `{"starting_after": ..., "per_page": ...}` object.
    Cursor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaginationSpec {
    pub next_style: NextStyle,
    /// Page size when the request names none.
    pub default_per_page: u32,
    /// The largest `per_page` honoured (a smaller value simulates a server ignoring it).
    pub max_per_page: u32,
}

impl Default for PaginationSpec {
    fn default() -> Self {
        Self {
            next_style: NextStyle::Url,
            default_per_page: 20,
            max_per_page: 250,
        }
    }
}

/// Real rate limiting: `limit` requests per fixed window of `window_secs`, per workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSpec {
    pub limit: u32,
    pub window_secs: u64,
}

impl Default for RateLimitSpec {
    /// Intercom's private-app default: 10,000 per minute, counted in 10-second windows.
    fn default() -> Self {
        Self {
            limit: 1666,
            window_secs: 10,
        }
    }
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates scenario JSON; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let scenario: Scenario =
            serde_path_to_error::deserialize(de).map_err(|e| ScenarioError::Parse {
                origin: origin.to_string(),
                at: e.path().to_string(),
                reason: e.inner().to_string(),
            })?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a scenario always serializes")
    }

    /// Checks what serde cannot: unique ids and tokens, known references, sane numbers.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut ids = HashSet::new();
        let mut tokens = HashSet::new();
        for ws in &self.workspaces {
            if !ids.insert(ws.id_code.as_str()) {
                return Err(invalid(format!(
                    "duplicate workspace id_code {:?}",
                    ws.id_code
                )));
            }
            for t in &ws.tokens {
                if !tokens.insert(t.token.as_str()) {
                    // Never echo a token, even a fake one: the message may land in CI logs.
                    return Err(invalid(format!(
                        "workspace {:?}: a token is used twice in the scenario",
                        ws.id_code
                    )));
                }
            }
            ws.validate()?;
        }
        Ok(())
    }
}

fn invalid(message: String) -> ScenarioError {
    ScenarioError::Invalid(message)
}

impl Workspace {
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let w = &self.id_code;
        if w.is_empty() {
            return Err(invalid("a workspace has an empty id_code".into()));
        }
        let mut admin_ids = HashSet::new();
        for a in &self.admins {
            if !admin_ids.insert(a.id.as_str()) {
                return Err(invalid(format!(
                    "workspace {w:?}: duplicate admin id {:?}",
                    a.id
                )));
            }
        }
        let mut seen = HashSet::new();
        for t in &self.tokens {
            if t.token.trim().is_empty() || t.token.chars().any(char::is_whitespace) {
                return Err(invalid(format!(
                    "workspace {w:?}: a token is empty or contains whitespace"
                )));
            }
            if !seen.insert(t.token.as_str()) {
                return Err(invalid(format!("workspace {w:?}: a token is listed twice")));
            }
            if let Some(owner) = &t.owner_admin_id {
                if !admin_ids.contains(owner.as_str()) {
                    return Err(invalid(format!(
                        "workspace {w:?}: token owner_admin_id {owner:?} is not an admin (use `owner` for a teammate outside /admins)"
                    )));
                }
            }
            if let Some(f) = &t.faults {
                f.validate(&format!("workspace {w:?} token faults"))?;
            }
        }
        let mut event_ids = HashSet::new();
        for e in &self.events {
            if !event_ids.insert(e.id.as_str()) {
                return Err(invalid(format!(
                    "workspace {w:?}: duplicate event id {:?}",
                    e.id
                )));
            }
            if e.created_at.is_some() == e.ago.is_some() {
                return Err(invalid(format!(
                    "workspace {w:?}: event {:?} needs exactly one of created_at and ago",
                    e.id
                )));
            }
        }
        let p = &self.pagination;
        if p.default_per_page == 0 || p.max_per_page == 0 {
            return Err(invalid(format!(
                "workspace {w:?}: pagination page sizes must be at least 1"
            )));
        }
        if self.rate_limit.limit == 0 || self.rate_limit.window_secs == 0 {
            return Err(invalid(format!(
                "workspace {w:?}: rate_limit limit and window_secs must be at least 1"
            )));
        }
        match &self.faults {
            Some(f) => f.validate(&format!("workspace {w:?} faults")),
            None => Ok(()),
        }
    }

    /// Turns relative event times into absolute ones (as of `now`) and records each
    /// performer's email as it is now (the log keeps it after the teammate is removed).
    pub(crate) fn resolve(&mut self, now: SystemTime) {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let admins = &self.admins;
        for e in &mut self.events {
            if let Some(ago) = e.ago.take() {
                e.created_at = Some(now_secs - ago.as_secs() as i64);
            }
            if e.performed_by_email.is_none() {
                e.performed_by_email = admins
                    .iter()
                    .find(|a| a.id == e.performed_by)
                    .map(|a| a.email.clone());
            }
        }
        // Newest first, ties by id descending: the order the API serves and cursors rely on.
        self.events
            .sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
    }
}

/// A readable default description, e.g. "Ann Lee: admin login success.".
pub(crate) fn describe(who: &str, activity_type: &str) -> String {
    format!("{who}: {}.", activity_type.replace('_', " "))
}

/// A JSON value kept as its text: one small allocation instead of a map node per entry
/// (events are the bulk of a generated world), and served verbatim.
#[derive(Debug, Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Self {
        RawJson(serde_json::value::to_raw_value(value).expect("serializable to JSON"))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    pub(crate) fn raw(&self) -> &RawValue {
        &self.0
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        RawJson::new(&value)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(RawJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"workspaces":[{"id_code":"w1","name":"W","region":"eu",
        "tokens":[{"token":"t1","scopes":["read_admins"]}],
        "admins":[{"id":"1","name":"A","email":"a@w.example"}],
        "events":[{"id":"e1","activity_type":"admin_login_success","ago":"1h","performed_by":"1"},
                  {"id":"e2","activity_type":"admin_logout","created_at":100,"performed_by":"1"}]}]}"#;

    #[test]
    fn minimal_scenario_parses_with_defaults() {
        let s = Scenario::parse(MINIMAL, "test").unwrap();
        let ws = &s.workspaces[0];
        assert_eq!(ws.region, Region::Eu);
        assert!(ws.admins[0].has_inbox_seat);
        assert_eq!(ws.pagination.next_style, NextStyle::Url);
        assert_eq!(ws.rate_limit.limit, 1666);
        assert!(ws.faults.is_none());
    }

    #[test]
    fn resolve_makes_times_absolute_and_sorts_newest_first() {
        let mut ws = Scenario::parse(MINIMAL, "test")
            .unwrap()
            .workspaces
            .remove(0);
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        ws.resolve(now);
        assert_eq!(ws.events[0].id, "e1");
        assert_eq!(ws.events[0].created_at, Some(10_000 - 3600));
        assert_eq!(ws.events[0].ago, None);
        assert_eq!(
            ws.events[1].performed_by_email.as_deref(),
            Some("a@w.example")
        );
        assert_eq!(ws.events[1].description, None, "described when served");
    }

    #[test]
    fn errors_name_the_place() {
        let e = Scenario::parse(
            r#"{"workspaces":[{"id_code":"w","name":"W","region":"ca"}]}"#,
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("workspaces[0].region"), "{e}");
        let dup = MINIMAL.replace("\"e2\"", "\"e1\"");
        let e = Scenario::parse(&dup, "x").unwrap_err().to_string();
        assert!(e.contains("duplicate event id"), "{e}");
        let e = Scenario::parse(r#"{"workspaces":[],"extra":1}"#, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn duplicate_tokens_are_rejected_without_echoing_them() {
        let two = format!(
            r#"{{"workspaces":[{0},{1}]}}"#,
            r#"{"id_code":"a","name":"A","region":"us","tokens":[{"token":"secret-ish"}]}"#,
            r#"{"id_code":"b","name":"B","region":"us","tokens":[{"token":"secret-ish"}]}"#
        );
        let e = Scenario::parse(&two, "x").unwrap_err().to_string();
        assert!(e.contains("token is used twice"), "{e}");
        assert!(!e.contains("secret-ish"), "{e}");
    }
}

//! Lenient models of the Intercom responses the scanner reads.
//!
//! The public spec marks almost nothing as required and the live API deviates from it
//! (avatar as object, `pages.next` as URL, ids as numbers or strings), so every field is
//! optional, unknown keys are ignored, and open enums stay strings. Unknown keys are not
//! kept: nothing reads them, and a `#[serde(flatten)]` catch-all makes serde buffer the
//! whole object as an untyped tree before decoding it: the `/admins` list, then each
//! teammate in it again.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Ids arrive as strings on objects and as integers in lists (`team_ids`, `update_by`);
/// normalise both to a string so they compare equal.
pub fn lenient_id<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Str(String),
        Int(i64),
        UInt(u64),
        Float(f64),
    }
    Ok(match Option::<Id>::deserialize(deserializer)? {
        None => None,
        Some(Id::Str(s)) => Some(s),
        Some(Id::Int(i)) => Some(i.to_string()),
        Some(Id::UInt(u)) => Some(u.to_string()),
        Some(Id::Float(f)) => Some(format!("{f}")),
    })
}

fn lenient_id_list<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "lenient_id")] Option<String>);
    let list = Option::<Vec<Wrapped>>::deserialize(deserializer)?;
    Ok(list.map(|items| items.into_iter().filter_map(|w| w.0).collect()))
}

/// `GET /me` → `admin_with_app`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Me {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub has_inbox_seat: Option<bool>,
    #[serde(default)]
    pub away_mode_enabled: Option<bool>,
    #[serde(default)]
    pub app: Option<App>,
    #[serde(default)]
    pub role: Option<Role>,
}

/// The workspace (`app` on `/me`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct App {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub id_code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub identity_verification: Option<bool>,
    /// Undeclared in the spec but present in every example; meaning unverified, never relied on.
    #[serde(default)]
    pub secure: Option<bool>,
}

/// `GET /admins` → `admin_list`. Not paginated.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct AdminList {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub admins: Vec<Admin>,
}

impl AdminList {
    /// Legacy responses mixed `type: team` entries into the list; only admins count.
    pub fn into_admins(self) -> Vec<Admin> {
        let mut admins: Vec<Admin> = self
            .admins
            .into_iter()
            .filter(|a| a.kind.as_deref().is_none_or(|k| k == "admin"))
            .collect();
        // The decoder grows the list by doubling and the filter keeps the buffer: 20,000
        // teammates sat in room for 32,768 (~5 MB unused) for the whole scan.
        admins.shrink_to_fit();
        admins
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Admin {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub job_title: Option<String>,
    #[serde(default)]
    pub away_mode_enabled: Option<bool>,
    #[serde(default)]
    pub away_mode_reassign: Option<bool>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub away_status_reason_id: Option<String>,
    #[serde(default)]
    pub has_inbox_seat: Option<bool>,
    #[serde(default, deserialize_with = "lenient_id_list")]
    pub team_ids: Option<Vec<String>>,
    #[serde(default)]
    pub avatar: Option<Avatar>,
    #[serde(default)]
    pub team_priority_level: Option<Value>,
    /// Only in API 2.16+, and only when the admin has a role; see `role_field_present`.
    #[serde(default)]
    pub role: Option<Role>,
}

/// Spec says string URI; the live API sends `{image_url}` (or `{type, image_url}` on /me).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Avatar {
    Url(String),
    Object {
        #[serde(default)]
        image_url: Option<String>,
    },
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Role {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `GET /admins/activity_logs` → `activity_log_list`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ActivityLogPage {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub pages: Option<Pages>,
    #[serde(default)]
    pub activity_logs: Vec<ActivityLog>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Pages {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub page: Option<i64>,
    #[serde(default)]
    pub per_page: Option<i64>,
    #[serde(default)]
    pub total_pages: Option<i64>,
    #[serde(default)]
    pub next: Option<NextPage>,
}

/// The live API sends a full URL; the spec documents a cursor object.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum NextPage {
    Url(String),
    Cursor {
        #[serde(default)]
        starting_after: Option<String>,
        #[serde(default)]
        per_page: Option<i64>,
    },
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ActivityLog {
    #[serde(default, deserialize_with = "lenient_id")]
    pub id: Option<String>,
    #[serde(default)]
    pub performed_by: Option<PerformedBy>,
    /// Kept raw: its keys vary by event type and are mostly undocumented.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// An open enum: new types appear before the spec lists them.
    #[serde(default)]
    pub activity_type: Option<String>,
    #[serde(default)]
    pub activity_description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct PerformedBy {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

/// `type: error.list`. Only `errors[].code` drives behaviour.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ErrorList {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ErrorItem {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

impl ErrorList {
    pub fn first_code(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.code.as_deref())
    }

    pub fn first_message(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.message.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> String {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intercom");
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn me_fixtures_parse() {
        let me: Me = serde_json::from_str(&fixture("me.json")).unwrap();
        let app = me.app.expect("app");
        assert!(app.id_code.is_some());
        assert_eq!(app.region.as_deref(), Some("US"));
        assert!(app.identity_verification.is_some());

        let eu: Me = serde_json::from_str(&fixture("me_eu_edge.json")).unwrap();
        assert_eq!(eu.email_verified, None);
        assert_eq!(eu.app.unwrap().region.as_deref(), Some("EU"));
    }

    #[test]
    fn admin_lists_parse_with_both_avatar_shapes() {
        for name in ["admins_list.json", "admins_list_avatar_string.json"] {
            let list: AdminList = serde_json::from_str(&fixture(name)).unwrap();
            let admins = list.into_admins();
            assert!(!admins.is_empty(), "{name}");
            assert!(admins.iter().all(|a| a.id.is_some()), "{name}");
        }
        let list: AdminList = serde_json::from_str(&fixture("admins_list.json")).unwrap();
        assert!(list
            .admins
            .iter()
            .any(|a| matches!(a.avatar, Some(Avatar::Object { .. }))));
        assert!(list.admins.iter().any(|a| a.role.is_some()));
        let strings: AdminList =
            serde_json::from_str(&fixture("admins_list_avatar_string.json")).unwrap();
        assert!(strings
            .admins
            .iter()
            .any(|a| matches!(a.avatar, Some(Avatar::Url(_)))));
        let single: Admin = serde_json::from_str(&fixture("admin_single.json")).unwrap();
        assert!(single.id.is_some());
    }

    /// Keys Intercom adds later, at any level, are ignored, not an error.
    #[test]
    fn unknown_keys_at_every_level_are_ignored() {
        let list: AdminList = serde_json::from_str(
            r#"{"type":"admin.list","new_list_key":1,"admins":[{"type":"admin","id":"7",
                "email":"a@b.example","new_admin_key":{"x":[1,2]},
                "role":{"type":"role","id":"1","name":"Admin","new_role_key":true},
                "avatar":{"image_url":"https://x.example/a.png","new_avatar_key":"y"}}]}"#,
        )
        .unwrap();
        let admins = list.into_admins();
        assert_eq!(admins.len(), 1);
        assert_eq!(admins[0].id.as_deref(), Some("7"));
        assert_eq!(
            admins[0].role.as_ref().and_then(|r| r.name.as_deref()),
            Some("Admin")
        );
        assert!(matches!(
            &admins[0].avatar,
            Some(Avatar::Object { image_url: Some(u) }) if u == "https://x.example/a.png"
        ));
        let page: ActivityLogPage = serde_json::from_str(
            r#"{"type":"activity_log.list","new":0,"pages":{"next":null,"new":1},
                "activity_logs":[{"id":"e1","new":2,"activity_type":"admin_login_success",
                "performed_by":{"id":"7","ip":"203.0.113.9","new":3},"created_at":1}]}"#,
        )
        .unwrap();
        let ev = &page.activity_logs[0];
        assert_eq!(ev.activity_type.as_deref(), Some("admin_login_success"));
        assert_eq!(
            ev.performed_by.as_ref().and_then(|p| p.ip.as_deref()),
            Some("203.0.113.9")
        );
    }

    #[test]
    fn activity_pages_parse_with_both_next_shapes() {
        let p1: ActivityLogPage =
            serde_json::from_str(&fixture("activity_logs_page1.json")).unwrap();
        assert!(matches!(
            p1.pages.as_ref().and_then(|p| p.next.clone()),
            Some(NextPage::Url(_))
        ));
        assert_eq!(p1.activity_logs.len(), 10);
        let p2: ActivityLogPage =
            serde_json::from_str(&fixture("activity_logs_page2.json")).unwrap();
        assert!(p2
            .activity_logs
            .iter()
            .any(|e| e.activity_type.as_deref() == Some("inbox_bulk_action")));
        let obj: ActivityLogPage =
            serde_json::from_str(&fixture("activity_logs_page1_next_object.json")).unwrap();
        assert!(matches!(
            obj.pages.and_then(|p| p.next),
            Some(NextPage::Cursor { .. })
        ));
        let spec: ActivityLogPage =
            serde_json::from_str(&fixture("activity_logs_spec_example.json")).unwrap();
        assert!(spec.pages.unwrap().next.is_none());
    }

    #[test]
    fn error_fixtures_parse() {
        for (name, code) in [
            ("error_401_unauthorized.json", "unauthorized"),
            ("error_401_token_unauthorized.json", "token_unauthorized"),
            ("error_403_forbidden_scope.json", "forbidden"),
            ("error_403_api_plan_restricted.json", "api_plan_restricted"),
            ("error_404_admin_not_found.json", "admin_not_found"),
            ("error_429_rate_limited.json", "rate_limit_exceeded"),
            ("error_429_spec_example.json", "rate_limit_exceeded"),
            ("error_missing_created_at_after.json", "parameter_not_found"),
        ] {
            let e: ErrorList = serde_json::from_str(&fixture(name)).unwrap();
            assert_eq!(e.first_code(), Some(code), "{name}");
        }
    }

    #[test]
    fn every_fixture_file_parses_as_some_model() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intercom");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let value: Value = serde_json::from_str(&text).unwrap();
            let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
            let ok = match kind {
                "admin" if value.get("app").is_some() => {
                    serde_json::from_value::<Me>(value).is_ok()
                }
                "admin" => serde_json::from_value::<Admin>(value).is_ok(),
                "admin.list" => serde_json::from_value::<AdminList>(value).is_ok(),
                "activity_log.list" => serde_json::from_value::<ActivityLogPage>(value).is_ok(),
                "error.list" => serde_json::from_value::<ErrorList>(value).is_ok(),
                // event type list, team list, header files: valid JSON is all the client needs.
                _ => true,
            };
            assert!(ok, "{name} did not parse");
            count += 1;
        }
        assert!(count >= 20, "expected every fixture, saw {count}");
    }
}

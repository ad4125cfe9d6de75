//! One finding: evidence as a readable list, risk, remediation, compliance references,
//! lifecycle history and the exception that mutes it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use crate::console::auth::Signed;
use crate::console::forms::FieldErrors;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};

const MAX_HISTORY: i64 = 500;
/// Evidence values longer than this are cut (they come from Intercom).
const MAX_VALUE_CHARS: usize = 2000;

pub struct ExceptionView {
    pub id: Uuid,
    pub reason: String,
    pub author: String,
    pub created: String,
    pub expires: Option<String>,
}

#[derive(Template)]
#[template(path = "console/finding.html")]
struct FindingPage {
    chrome: Chrome,
    id: Uuid,
    notice: &'static str,
    /// The signed-in user may add or remove exceptions (operator or admin).
    can_mute: bool,
    mute: MuteTyped,
    errors: FieldErrors,
    title: String,
    severity: String,
    status: String,
    instance_id: Uuid,
    instance_name: String,
    resource: String,
    check_id: String,
    first_seen: String,
    last_seen: String,
    reopen_count: i32,
    exception: Option<ExceptionView>,
    evidence: Vec<(String, String)>,
    risk: String,
    remediation: String,
    compliance: Vec<(String, String)>,
    history: Vec<(String, String, String, String)>,
}

/// What was typed in the "Mute with an exception" form, shown again after an error.
#[derive(Debug, Clone, Deserialize)]
pub struct MuteTyped {
    #[serde(default)]
    pub reason: String,
    /// "resource" (this finding's resource) or "check" (every resource of the check).
    #[serde(default = "resource_scope")]
    pub scope: String,
    #[serde(default)]
    pub expires: String,
    /// The checkbox: present ("true") when ticked.
    #[serde(default)]
    pub permanent: Option<String>,
}

fn resource_scope() -> String {
    "resource".into()
}

impl Default for MuteTyped {
    fn default() -> Self {
        Self {
            reason: String::new(),
            scope: resource_scope(),
            expires: String::new(),
            permanent: None,
        }
    }
}

/// `?done=` on the finding page: which action just succeeded (a fixed word, never data).
#[derive(Deserialize, Default)]
pub struct Done {
    pub done: Option<String>,
}

fn done_notice(done: Option<&str>) -> &'static str {
    match done {
        Some("muted") => "Exception added: the matching open findings are muted.",
        Some("unmuted") => "Exception removed: the findings it muted are open again.",
        _ => "",
    }
}

/// A JSON value as text for a person: strings bare, lists joined, objects as compact JSON.
fn readable(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "–".into(),
        serde_json::Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            items.iter().map(readable).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    };
    if s.chars().count() > MAX_VALUE_CHARS {
        let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}… (cut)")
    } else {
        s
    }
}

fn entries(v: &serde_json::Value) -> Vec<(String, String)> {
    match v {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('_', " "), readable(v)))
            .collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![("value".into(), readable(other))],
    }
}

pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    done: Query<Done>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let notice = done_notice(done.done.as_deref());
    render(
        &state,
        &signed,
        id,
        notice,
        MuteTyped::default(),
        FieldErrors::default(),
    )
    .await
}

/// The finding page, with the mute form as typed and its errors (422 when there are any).
pub async fn render(
    state: &ConsoleState,
    signed: &Signed,
    id: Uuid,
    notice: &'static str,
    mute: MuteTyped,
    errors: FieldErrors,
) -> Response {
    let pool = &state.pool;
    let f = match sqlx::query!(
        // The view's columns (for the derived last_seen_at), NOT NULL in its table.
        r#"SELECT f.id AS "id!", f.instance_id AS "instance_id!", i.name AS instance_name,
                  f.check_id AS "check_id!", f.resource AS "resource!", f.status AS "status!",
                  f.severity AS "severity!", f.title AS "title!", f.evidence AS "evidence!",
                  f.remediation AS "remediation!", f.compliance AS "compliance!",
                  f.first_seen_at AS "first_seen_at!", f.last_seen_at AS "last_seen_at!",
                  f.reopen_count AS "reopen_count!",
                  e.id AS "exc_id?", e.reason AS "exc_reason?", e.author AS "exc_author?",
                  e.created_at AS "exc_created?", e.expires_at AS exc_expires
           FROM sspm.findings f JOIN sspm.instances i ON i.id = f.instance_id
           LEFT JOIN sspm.exceptions e ON e.id = f.exception_id
           WHERE f.id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await
    {
        Ok(Some(f)) => f,
        Ok(None) => return views::not_found(signed, "finding"),
        Err(e) => return views::internal(e),
    };
    let history = match sqlx::query!(
        "SELECT at, from_status, to_status, reason FROM sspm.finding_events
         WHERE finding_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        id,
        MAX_HISTORY
    )
    .fetch_all(pool)
    .await
    {
        Ok(h) => h
            .into_iter()
            .map(|h| {
                (
                    views::when(&Some(h.at)),
                    h.from_status.unwrap_or_else(|| "(new)".into()),
                    h.to_status,
                    h.reason.unwrap_or_default(),
                )
            })
            .collect(),
        Err(e) => return views::internal(e),
    };
    let meta = crate::checks::meta(&f.check_id);
    let exception = match (f.exc_id, f.exc_reason, f.exc_author, f.exc_created) {
        (Some(exc_id), Some(reason), Some(author), Some(created)) => Some(ExceptionView {
            id: exc_id,
            reason,
            author,
            created: views::when(&Some(created)),
            expires: f.exc_expires.map(|t| views::when(&Some(t))),
        }),
        _ => None,
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    views::with_status(
        status,
        &FindingPage {
            chrome: Chrome::for_user(signed),
            id,
            notice,
            can_mute: signed.role.allows(Role::Operator),
            mute,
            errors,
            title: f.title,
            severity: f.severity,
            status: f.status,
            instance_id: f.instance_id,
            instance_name: f.instance_name,
            resource: f.resource,
            check_id: f.check_id,
            first_seen: views::when(&Some(f.first_seen_at)),
            last_seen: views::when(&Some(f.last_seen_at)),
            reopen_count: f.reopen_count,
            exception,
            evidence: entries(&f.evidence),
            risk: meta.map(|m| m.risk.to_string()).unwrap_or_default(),
            remediation: f.remediation,
            compliance: entries(&f.compliance),
            history,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_reads_as_key_value_pairs() {
        let v = serde_json::json!({"email_domain": "gmail.com", "admins": ["a", "b"], "n": 3});
        let e = entries(&v);
        assert!(e.contains(&("email domain".into(), "gmail.com".into())));
        assert!(e.contains(&("admins".into(), "a, b".into())));
        let long = serde_json::json!({"x": "y".repeat(5000)});
        assert!(entries(&long)[0].1.ends_with("(cut)"));
    }
}

//! One finding: evidence as a readable list, risk, remediation, compliance references,
//! lifecycle history and the exception that mutes it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use uuid::Uuid;

use crate::console::auth::Signed;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};

const MAX_HISTORY: i64 = 500;
/// Evidence values longer than this are cut (they come from Intercom).
const MAX_VALUE_CHARS: usize = 2000;

pub struct ExceptionView {
    pub reason: String,
    pub author: String,
    pub created: String,
    pub expires: Option<String>,
}

#[derive(Template)]
#[template(path = "console/finding.html")]
struct FindingPage {
    chrome: Chrome,
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
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let pool = &state.pool;
    let f = match sqlx::query!(
        r#"SELECT f.id, f.instance_id, i.name AS instance_name, f.check_id, f.resource, f.status,
                  f.severity, f.title, f.evidence, f.remediation, f.compliance, f.first_seen_at,
                  f.last_seen_at, f.reopen_count,
                  e.reason AS "exc_reason?", e.author AS "exc_author?",
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
        Ok(None) => return views::not_found(&signed, "finding"),
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
    let exception = match (f.exc_reason, f.exc_author, f.exc_created) {
        (Some(reason), Some(author), Some(created)) => Some(ExceptionView {
            reason,
            author,
            created: views::when(&Some(created)),
            expires: f.exc_expires.map(|t| views::when(&Some(t))),
        }),
        _ => None,
    };
    views::page(&FindingPage {
        chrome: Chrome::for_user(&signed),
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
    })
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

//! Exceptions from the finding page (operator): "Mute with an exception" adds one for
//! this finding's resource or every resource of its check, and "Remove exception" asks
//! once more, then removes it and the findings reopen. Both run `crate::exceptions`, the
//! code behind `intercom-sspm exception add|remove` (same rules, one audit row by the
//! signed-in user in the change's transaction); the CSRF middleware has already refused
//! any POST without this browser's token. `/exceptions` lists them all (viewer), with
//! the same removal for operators.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::Actor;
use crate::console::auth::Signed;
use crate::console::forms::FieldErrors;
use crate::console::role::Role;
use crate::console::routes::finding::{self, MuteTyped};
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::db::exceptions::ExceptionError;
use crate::exceptions::{self, ExceptionInput};

pub async fn add(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(typed): Form<MuteTyped>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Operator) {
        return r;
    }
    let f = match sqlx::query!(
        "SELECT f.instance_id, i.name AS instance_name, f.check_id, f.resource
         FROM sspm.finding_rows f JOIN sspm.instances i ON i.id = f.instance_id WHERE f.id = $1",
        id
    )
    .fetch_optional(&state.pool)
    .await
    {
        Ok(Some(f)) => f,
        Ok(None) => return views::not_found(&signed, "finding"),
        Err(e) => return views::internal(e),
    };
    let mut errors = FieldErrors::default();
    let resource = match typed.scope.as_str() {
        "resource" => Some(f.resource.as_str()),
        "check" => None,
        _ => {
            errors.add(
                "scope",
                "choose what the exception covers: this resource or every resource of the check",
            );
            return finding::render(&state, &signed, id, "", typed, errors).await;
        }
    };
    let valid = match exceptions::validate(
        &ExceptionInput {
            check: &f.check_id,
            resource,
            reason: &typed.reason,
            expires: Some(&typed.expires),
            permanent: typed.permanent.is_some(),
        },
        Utc::now(),
    ) {
        Ok(v) => v,
        Err(e) => {
            errors.add(e.field(), console_wording(&e.to_string()));
            return finding::render(&state, &signed, id, "", typed, errors).await;
        }
    };
    let actor = Actor::console(&signed.name);
    // The finding itself names the resource, so there is nothing to force past.
    match exceptions::add(
        &state.pool,
        f.instance_id,
        &f.instance_name,
        &valid,
        &signed.name,
        false,
        &actor,
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/findings/{id}?done=muted")).into_response(),
        Err(ExceptionError::Db(e)) => views::internal(e),
        Err(e @ ExceptionError::Duplicate { .. }) => {
            errors.add("general", e.to_string());
            finding::render(&state, &signed, id, "", typed, errors).await
        }
        Err(ExceptionError::NoSuchFinding { .. }) => {
            errors.add(
                "general",
                "this finding is no longer open or muted (a later scan resolved it), so there is nothing to mute: choose \"every resource of the check\" to cover it should it come back",
            );
            finding::render(&state, &signed, id, "", typed, errors).await
        }
    }
}

/// The rules' messages name the CLI's flags; on the form the field is named instead.
fn console_wording(msg: &str) -> String {
    msg.replace("(--expires 30d, --expires 2027-03-31)", "(30d, 2027-03-31)")
        .replace("--expires is", "the expiry is")
        .replace("--expires ", "expiry ")
        .replace("--reason", "the reason")
        .replace("pass --permanent", "tick \"permanent\"")
}

#[derive(Template)]
#[template(path = "console/exception_remove.html")]
struct ConfirmPage {
    chrome: Chrome,
    id: Uuid,
    instance_name: String,
    check_id: String,
    resource: Option<String>,
    reason: String,
    muted: i64,
    back: Option<Uuid>,
}

#[derive(Deserialize)]
pub struct RemoveForm {
    /// "yes" from the confirmation page; anything else shows that page.
    #[serde(default)]
    confirm: String,
    /// The finding page to return to (an id, so never an open redirect).
    #[serde(default)]
    back: Option<Uuid>,
}

pub async fn remove(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Operator) {
        return r;
    }
    if form.confirm != "yes" {
        let e = match sqlx::query!(
            r#"SELECT i.name AS instance_name, e.check_id, e.resource, e.reason,
                      (SELECT count(*) FROM sspm.finding_rows f
                       WHERE f.exception_id = e.id AND f.status = 'muted') AS "muted!"
               FROM sspm.exceptions e JOIN sspm.instances i ON i.id = e.instance_id
               WHERE e.id = $1"#,
            id
        )
        .fetch_optional(&state.pool)
        .await
        {
            Ok(Some(e)) => e,
            Ok(None) => return views::not_found(&signed, "exception"),
            Err(e) => return views::internal(e),
        };
        return views::page(&ConfirmPage {
            chrome: Chrome::for_user(&signed),
            id,
            instance_name: e.instance_name,
            check_id: e.check_id,
            resource: e.resource,
            reason: e.reason,
            muted: e.muted,
            back: form.back,
        });
    }
    match exceptions::remove(&state.pool, id, &Actor::console(&signed.name)).await {
        Ok(Some(_)) => match form.back {
            Some(f) => Redirect::to(&format!("/findings/{f}?done=unmuted")).into_response(),
            None => Redirect::to("/exceptions?done=unmuted").into_response(),
        },
        Ok(None) => views::message(
            &signed,
            StatusCode::NOT_FOUND,
            "No such exception",
            "It was removed already (or has never existed); nothing changed.",
        ),
        Err(e) => views::internal(e),
    }
}

/// Exceptions are added by people, so there are few; the page still stops somewhere.
const MAX_LISTED: usize = 1000;

pub struct ListedException {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub instance_name: String,
    pub check_id: String,
    pub resource: String,
    pub reason: String,
    pub author: String,
    pub created: String,
    pub expires: String,
    pub muted: i64,
}

#[derive(Template)]
#[template(path = "console/exceptions.html")]
struct ListPage {
    chrome: Chrome,
    notice: &'static str,
    rows: Vec<ListedException>,
    cut: bool,
    can_remove: bool,
}

pub async fn list(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    done: Query<finding::Done>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let mut rows = match crate::db::exceptions::list(&state.pool, None).await {
        Ok(r) => r,
        Err(e) => return views::internal(e),
    };
    let cut = rows.len() > MAX_LISTED;
    rows.truncate(MAX_LISTED);
    let now = Utc::now();
    let rows = rows
        .into_iter()
        .map(|e| ListedException {
            id: e.id,
            instance_id: e.instance_id,
            instance_name: e.instance_name,
            check_id: e.check_id,
            resource: e.resource.unwrap_or_else(|| "(every resource)".into()),
            reason: e.reason,
            author: e.author,
            created: views::when(&Some(e.created_at)),
            expires: match e.expires_at {
                None => "never".into(),
                Some(t) if t <= now => format!("{} (expired)", views::when(&Some(t))),
                Some(t) => views::when(&Some(t)),
            },
            muted: e.muted_findings,
        })
        .collect();
    views::page(&ListPage {
        chrome: Chrome::for_user(&signed),
        notice: match done.done.as_deref() {
            Some("unmuted") => "Exception removed: the findings it muted are open again.",
            _ => "",
        },
        rows,
        cut,
        can_remove: signed.role.allows(Role::Operator),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_form_fields_not_the_flags() {
        let m = console_wording(&crate::exceptions::InputError::NoExpiry.to_string());
        assert!(!m.contains("--"), "{m}");
        assert!(
            m.contains("tick \"permanent\"") && m.contains("(30d, "),
            "{m}"
        );
    }
}

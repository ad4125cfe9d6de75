//! The audit log page, newest first, keyset-paginated by id.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::console::auth::Signed;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};

const PAGE_SIZE: i64 = 100;

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    rows: Vec<(String, String, String, String, String, String)>,
    next: Option<String>,
}

pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let rows = match crate::audit::list(&state.pool, q.before, PAGE_SIZE).await {
        Ok(r) => r,
        Err(e) => return views::internal(e),
    };
    let next = (rows.len() as i64 == PAGE_SIZE)
        .then(|| rows.last().map(|r| format!("/audit?before={}", r.id)))
        .flatten();
    let rows = rows
        .into_iter()
        .map(|r| {
            (
                views::when(&Some(r.at)),
                r.actor,
                r.via,
                r.action,
                r.target,
                r.details.to_string(),
            )
        })
        .collect();
    views::page(&AuditPage {
        chrome: Chrome::for_user(&signed),
        rows,
        next,
    })
}

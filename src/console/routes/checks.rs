//! The check catalog, straight from `crate::checks::catalog` (no database).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::checks::CheckMeta;
use crate::console::auth::Signed;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};

#[derive(Template)]
#[template(path = "console/checks.html")]
struct ChecksPage {
    chrome: Chrome,
    checks: &'static [CheckMeta],
}

pub async fn page(State(_state): State<Arc<ConsoleState>>, signed: Signed) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    views::page(&ChecksPage {
        chrome: Chrome::for_user(&signed),
        checks: crate::checks::catalog(),
    })
}

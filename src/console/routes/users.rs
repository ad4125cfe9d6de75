//! Console users (admin only; never their hashes).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::console::auth::Signed;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::users::{self, User};
use crate::console::views::{self, Chrome};

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<User>,
}

pub async fn page(State(state): State<Arc<ConsoleState>>, signed: Signed) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    match users::list(&state.pool).await {
        Ok(users) => views::page(&UsersPage {
            chrome: Chrome::for_user(&signed),
            users,
        }),
        Err(e) => views::internal(e),
    }
}

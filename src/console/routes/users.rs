//! Console users (admin only; never their hashes): the list, add (a typed password or a
//! generated one shown once), change role, disable / enable, reset the password, and
//! remove after a confirmation step. The rules are `crate::console::users`' (the CLI's);
//! an admin cannot demote, disable or remove themselves or the last active admin. Each
//! change leaves one audit row in its transaction, never with the password.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::console::auth::Signed;
use crate::console::forms::{self, FieldErrors};
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::users::{self, AdminChange, User, UserError};
use crate::console::views::{self, Chrome};

const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<User>,
    me: String,
    roles: [&'static str; 3],
    /// The add form as typed (never the password).
    name: String,
    role: String,
    errors: FieldErrors,
    /// An error of one user's row: (user id, message).
    row_error: Option<(Uuid, String)>,
    notice: &'static str,
}

impl UsersPage {
    fn row_error_for(&self, id: &Uuid) -> &str {
        match &self.row_error {
            Some((u, m)) if u == id => m,
            _ => "",
        }
    }
}

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> &'static str {
    match done {
        Some("added") => "User added.",
        Some("role") => "Role changed; it applies from the user's next request.",
        Some("disabled") => "User disabled; their sessions ended.",
        Some("enabled") => "User enabled: they can sign in again.",
        Some("password") => "Password changed; the user's sessions ended.",
        Some("removed") => "User removed with their sessions; the audit log keeps their name.",
        _ => "",
    }
}

struct Render {
    name: String,
    role: String,
    errors: FieldErrors,
    row_error: Option<(Uuid, String)>,
    notice: &'static str,
}

async fn render(state: &ConsoleState, signed: &Signed, r: Render) -> Response {
    let all = match users::list(&state.pool).await {
        Ok(u) => u,
        Err(e) => return views::internal(e),
    };
    let status = if r.errors.is_empty() && r.row_error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    views::with_status(
        status,
        &UsersPage {
            chrome: Chrome::for_user(signed),
            users: all,
            me: signed.name.clone(),
            roles: ROLES,
            name: r.name,
            role: r.role,
            errors: r.errors,
            row_error: r.row_error,
            notice: r.notice,
        },
    )
}

fn blank(notice: &'static str) -> Render {
    Render {
        name: String::new(),
        role: "viewer".into(),
        errors: FieldErrors::default(),
        row_error: None,
        notice,
    }
}

pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<Done>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    render(&state, &signed, blank(notice(q.done.as_deref()))).await
}

#[derive(Template)]
#[template(path = "console/user_password.html")]
struct PasswordPage {
    chrome: Chrome,
    heading: &'static str,
    name: String,
    password: String,
}

/// The generated password, once: it is the answer to the POST (never a redirect target,
/// never in a URL), and the console's `no-store` keeps it out of caches.
fn password_page(
    signed: &Signed,
    heading: &'static str,
    name: &str,
    pw: &SecretString,
) -> Response {
    views::page(&PasswordPage {
        chrome: Chrome::for_user(signed),
        heading,
        name: name.to_string(),
        password: pw.expose_secret().to_string(),
    })
}

/// The password a form asks for: generated, or typed and checked with the CLI's rule.
fn chosen_password(
    typed: Option<SecretString>,
    generate: bool,
) -> Result<(SecretString, bool), UserError> {
    if generate {
        return Ok((users::generate_password(), true));
    }
    let typed = typed.unwrap_or_else(|| SecretString::from(String::new()));
    users::validate_password(&typed)?;
    Ok((typed, false))
}

#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    password: Option<SecretString>,
    #[serde(default)]
    generate: String,
}

pub async fn add(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Form(form): Form<AddForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let name = form.name.trim().to_string();
    let mut errors = FieldErrors::default();
    if let Err(e) = users::validate_name(&name) {
        errors.add("name", e.to_string());
    }
    let role = match form.role.parse::<Role>() {
        Ok(r) => Some(r),
        Err(e) => {
            errors.add("role", e.to_string());
            None
        }
    };
    let password = match chosen_password(form.password, !form.generate.is_empty()) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.add("password", e.to_string());
            None
        }
    };
    let (Some(role), Some((password, generated)), true) = (role, password, errors.is_empty())
    else {
        let r = Render {
            name,
            role: form.role,
            errors,
            row_error: None,
            notice: "",
        };
        return render(&state, &signed, r).await;
    };
    let hash = match users::hash_password(&password) {
        Ok(h) => h,
        Err(e) => return views::internal(e),
    };
    let actor = Actor::console(&signed.name);
    let added = async {
        let mut tx = state.pool.begin().await?;
        let user = users::add(&mut tx, &name, role, &hash).await?;
        let details =
            json!({ "user_id": user.id, "role": role.as_str(), "generated_password": generated });
        audit::record(&mut tx, &actor, "user.add", &user.name, details).await?;
        tx.commit().await?;
        Ok::<_, UserError>(user)
    }
    .await;
    match added {
        Ok(user) if generated => password_page(&signed, "User added", &user.name, &password),
        Ok(_) => Redirect::to("/users?done=added").into_response(),
        Err(e @ UserError::Duplicate(_)) => {
            let mut errors = FieldErrors::default();
            errors.add("name", e.to_string());
            let r = Render {
                name,
                role: form.role,
                errors,
                row_error: None,
                notice: "",
            };
            render(&state, &signed, r).await
        }
        Err(e) => views::internal(e),
    }
}

async fn load(state: &ConsoleState, signed: &Signed, id: Uuid) -> Result<User, Response> {
    match users::get_by_id(&state.pool, id).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(views::not_found(signed, "user")),
        Err(e) => Err(views::internal(e)),
    }
}

/// A refused change of one user: the users page with the reason on that user's row.
async fn refused_row(state: &ConsoleState, signed: &Signed, id: Uuid, message: String) -> Response {
    let mut r = blank("");
    r.row_error = Some((id, message));
    render(state, signed, r).await
}

/// After a change: its notice, the refusal on the user's row, or the 500 page.
async fn answer(
    state: &ConsoleState,
    signed: &Signed,
    id: Uuid,
    result: Result<(), UserError>,
    done: &str,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&format!("/users?done={done}")).into_response(),
        Err(UserError::Db(e)) => views::internal(e),
        Err(e) => refused_row(state, signed, id, e.to_string()).await,
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn set_role(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<RoleForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let user = match load(&state, &signed, id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let role = match form.role.parse::<Role>() {
        Ok(r) => r,
        Err(e) => return refused_row(&state, &signed, id, e.to_string()).await,
    };
    let actor = Actor::console(&signed.name);
    let changed = async {
        let mut tx = state.pool.begin().await?;
        if role != Role::Admin {
            users::guard_admin_change(&mut tx, &signed.name, &user, AdminChange::Demote).await?;
        }
        users::set_role(&mut tx, user.id, role).await?;
        let details = json!({ "user_id": user.id, "from": user.role, "to": role.as_str() });
        audit::record(&mut tx, &actor, "user.set_role", &user.name, details).await?;
        tx.commit().await?;
        Ok::<_, UserError>(())
    }
    .await;
    answer(&state, &signed, id, changed, "role").await
}

/// Disabling ends the user's sessions at once (`users::set_disabled`).
pub async fn set_enabled(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<forms::EnabledForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let user = match load(&state, &signed, id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(enabled) = form.wanted() else {
        let m = "The form asked neither to enable nor to disable the user: use the buttons on the users page.";
        return refused_row(&state, &signed, id, m.into()).await;
    };
    let disabled = !enabled;
    let actor = Actor::console(&signed.name);
    let changed = async {
        let mut tx = state.pool.begin().await?;
        if disabled {
            users::guard_admin_change(&mut tx, &signed.name, &user, AdminChange::Disable).await?;
        }
        users::set_disabled(&mut tx, user.id, disabled).await?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        audit::record(
            &mut tx,
            &actor,
            action,
            &user.name,
            json!({ "user_id": user.id }),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, UserError>(())
    }
    .await;
    let done = if disabled { "disabled" } else { "enabled" };
    answer(&state, &signed, id, changed, done).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    password: Option<SecretString>,
    #[serde(default)]
    generate: String,
}

/// A new password (typed, or generated and shown once); the user's sessions end.
pub async fn reset_password(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<PasswordForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let user = match load(&state, &signed, id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (password, generated) = match chosen_password(form.password, !form.generate.is_empty()) {
        Ok(p) => p,
        Err(e) => return refused_row(&state, &signed, id, e.to_string()).await,
    };
    let hash = match users::hash_password(&password) {
        Ok(h) => h,
        Err(e) => return views::internal(e),
    };
    let actor = Actor::console(&signed.name);
    let changed = async {
        let mut tx = state.pool.begin().await?;
        users::set_password(&mut tx, user.id, &hash).await?;
        let details = json!({ "user_id": user.id, "generated_password": generated });
        audit::record(&mut tx, &actor, "user.set_password", &user.name, details).await?;
        tx.commit().await?;
        Ok::<_, UserError>(())
    }
    .await;
    match changed {
        Ok(()) if generated => password_page(&signed, "Password reset", &user.name, &password),
        other => answer(&state, &signed, id, other, "password").await,
    }
}

#[derive(Template)]
#[template(path = "console/user_remove.html")]
struct RemovePage {
    chrome: Chrome,
    u: User,
}

pub async fn remove_form(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    match load(&state, &signed, id).await {
        Ok(u) => views::page(&RemovePage {
            chrome: Chrome::for_user(&signed),
            u,
        }),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    confirm: String,
}

/// Removes only with `confirm=yes`, which only the confirmation page sends.
pub async fn remove(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let user = match load(&state, &signed, id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if form.confirm != "yes" {
        return views::page(&RemovePage {
            chrome: Chrome::for_user(&signed),
            u: user,
        });
    }
    let actor = Actor::console(&signed.name);
    let changed = async {
        let mut tx = state.pool.begin().await?;
        users::guard_admin_change(&mut tx, &signed.name, &user, AdminChange::Remove).await?;
        users::remove(&mut tx, user.id).await?;
        let details = json!({ "user_id": user.id, "role": user.role });
        audit::record(&mut tx, &actor, "user.remove", &user.name, details).await?;
        tx.commit().await?;
        Ok::<_, UserError>(())
    }
    .await;
    answer(&state, &signed, id, changed, "removed").await
}

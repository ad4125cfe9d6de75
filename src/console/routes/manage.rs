//! Day-2 actions on one instance: scan now (operator), and on the settings page (admin)
//! replace the token, change the schedule or the allowed domains, enable / disable, and
//! remove after typing the instance's name; and the check overrides (thresholds and
//! lists) on the settings page too. Each runs the `crate::manage` function the
//! CLI runs (one audit row by the signed-in user in the change's transaction); the CSRF
//! middleware has already refused any POST without this browser's token.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::Actor;
use crate::checks::overrides::{self, Edit, Kind};
use crate::console::auth::Signed;
use crate::console::forms::{self, FieldErrors};
use crate::console::role::Role;
use crate::console::routes::onboard::ops;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::db::instances::{self, Instance};
use crate::manage::{self, OverridesError, RemovalImpact};
use crate::onboard;

async fn load(state: &ConsoleState, signed: &Signed, id: Uuid) -> Result<Instance, Response> {
    match instances::find_by_id(&state.pool, id).await {
        Ok(Some(i)) => Ok(i),
        Ok(None) => Err(views::not_found(signed, "instance")),
        Err(e) => Err(views::internal(e)),
    }
}

fn done(id: Uuid, what: &str) -> Response {
    Redirect::to(&format!("/instances/{id}?done={what}")).into_response()
}

/// Operator: make the instance due now; the instance page then shows the scan queued,
/// running and its results (it reloads itself meanwhile).
pub async fn scan_now(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Operator) {
        return r;
    }
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    if !i.enabled {
        return views::message(
            &signed,
            StatusCode::CONFLICT,
            "The instance is disabled",
            "A disabled instance is not scanned: an admin can enable it on its settings page first.",
        );
    }
    match manage::queue_scan(&state.pool, &i, &Actor::console(&signed.name)).await {
        Ok(()) => done(id, "scan"),
        Err(e) => views::internal(e),
    }
}

/// What was typed in the settings forms (never the token).
#[derive(Debug, Default, Clone)]
pub struct Typed {
    pub token_ref: String,
    pub schedule: String,
    pub timezone: String,
    pub allowed_domains: String,
}

#[derive(Template)]
#[template(path = "console/instance_settings.html")]
struct SettingsPage {
    chrome: Chrome,
    i: Instance,
    f: Typed,
    errors: FieldErrors,
    default_schedule: String,
    preview: Vec<String>,
    token_dropped: bool,
    has_key: bool,
    overrides: OverridesForm,
}

async fn settings_page(
    state: &ConsoleState,
    signed: &Signed,
    i: Instance,
    f: Option<Typed>,
    errors: FieldErrors,
    token_dropped: bool,
) -> Response {
    settings_page_with(state, signed, i, f, errors, token_dropped, None).await
}

/// The settings page; `overrides` is the overrides form as submitted (None: as stored).
async fn settings_page_with(
    state: &ConsoleState,
    signed: &Signed,
    i: Instance,
    f: Option<Typed>,
    errors: FieldErrors,
    token_dropped: bool,
    overrides: Option<OverridesForm>,
) -> Response {
    let ops = match ops(state, signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let overrides = match overrides {
        Some(o) => o,
        None => match instances::check_overrides(&state.pool, i.id).await {
            Ok(current) => OverridesForm::stored(&ops.checks, &current.unwrap_or_default()),
            Err(e) => return views::internal(e),
        },
    };
    let f = f.unwrap_or_else(|| {
        let (schedule, timezone) = split_schedule(i.schedule.as_deref());
        Typed {
            token_ref: String::new(),
            schedule,
            timezone,
            allowed_domains: i.allowed_domains.join(", "),
        }
    });
    let status = if errors.is_empty() && !overrides.refused {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    views::with_status(
        status,
        &SettingsPage {
            chrome: Chrome::for_user(signed),
            preview: forms::preview(&f.schedule, &f.timezone, &ops.default_schedule),
            default_schedule: ops.default_schedule.clone(),
            has_key: ops.keyring.is_some(),
            i,
            f,
            errors,
            token_dropped,
            overrides,
        },
    )
}

/// A stored `CRON_TZ=<zone> <cron>` as the two fields it came from.
fn split_schedule(stored: Option<&str>) -> (String, String) {
    match stored {
        None => (String::new(), String::new()),
        Some(s) => match s
            .strip_prefix("CRON_TZ=")
            .and_then(|r| r.split_once(char::is_whitespace))
        {
            Some((tz, cron)) => (cron.trim().to_string(), tz.to_string()),
            None => (s.to_string(), String::new()),
        },
    }
}

pub async fn settings(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    match load(&state, &signed, id).await {
        Ok(i) => settings_page(&state, &signed, i, None, FieldErrors::default(), false).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: Option<SecretString>,
    #[serde(default)]
    token_ref: String,
}

pub async fn set_token(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let dropped = form
        .token
        .as_ref()
        .is_some_and(|t| !t.expose_secret().trim().is_empty());
    let token_ref = form.token_ref.trim().to_string();
    let mut errors = FieldErrors::default();
    let input = forms::token_input(
        form.token,
        &token_ref,
        ops.token_key_file.as_deref(),
        "paste the new access token (or give a token reference)",
        &mut errors,
    );
    let mut typed = Typed {
        token_ref: token_ref.clone(),
        ..Default::default()
    };
    let (schedule, timezone) = split_schedule(i.schedule.as_deref());
    typed.schedule = schedule;
    typed.timezone = timezone;
    typed.allowed_domains = i.allowed_domains.join(", ");
    let Some(input) = input else {
        return settings_page(&state, &signed, i, Some(typed), errors, dropped).await;
    };
    let actor = Actor::console(&signed.name);
    match manage::replace_token(
        &state.pool,
        &ops.client,
        ops.keyring.as_ref(),
        &i,
        input,
        &actor,
    )
    .await
    {
        Ok(_) => done(id, "token"),
        Err(e) => match forms::manage_field_of(&e) {
            Ok((field, msg)) => {
                errors.add(field, msg);
                settings_page(&state, &signed, i, Some(typed), errors, dropped).await
            }
            Err(internal) => views::internal(internal),
        },
    }
}

#[derive(Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    step: String,
}

pub async fn set_schedule(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<ScheduleForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let typed = Typed {
        token_ref: String::new(),
        schedule: form.schedule.trim().to_string(),
        timezone: form.timezone.trim().to_string(),
        allowed_domains: i.allowed_domains.join(", "),
    };
    if form.step == "preview" {
        return settings_page(
            &state,
            &signed,
            i,
            Some(typed),
            FieldErrors::default(),
            false,
        )
        .await;
    }
    // An empty schedule field means the default, as "default" does on the CLI.
    let given = if typed.schedule.is_empty() {
        "default"
    } else {
        typed.schedule.as_str()
    };
    let mut errors = FieldErrors::default();
    let stored = match onboard::schedule_change(given, Some(&typed.timezone)) {
        Ok(s) => s,
        Err(e) => {
            let (f, m) = forms::field_of(&e).unwrap_or(("schedule", e.to_string()));
            errors.add(f, m);
            return settings_page(&state, &signed, i, Some(typed), errors, false).await;
        }
    };
    let actor = Actor::console(&signed.name);
    match manage::set_schedule(
        &state.pool,
        &i,
        stored,
        &ops.default_schedule,
        ops.jitter,
        &actor,
    )
    .await
    {
        Ok(_) => done(id, "schedule"),
        Err(e) => match forms::manage_field_of(&e) {
            Ok((field, msg)) => {
                errors.add(field, msg);
                settings_page(&state, &signed, i, Some(typed), errors, false).await
            }
            Err(internal) => views::internal(internal),
        },
    }
}

#[derive(Deserialize)]
pub struct DomainsForm {
    #[serde(default)]
    allowed_domains: String,
}

pub async fn set_domains(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<DomainsForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let actor = Actor::console(&signed.name);
    let raw = vec![form.allowed_domains.clone()];
    match manage::set_domains(&state.pool, &i, &raw, &actor).await {
        Ok(_) => done(id, "domains"),
        Err(e) => match forms::manage_field_of(&e) {
            Ok((field, msg)) => {
                let mut errors = FieldErrors::default();
                errors.add(field, msg);
                let (schedule, timezone) = split_schedule(i.schedule.as_deref());
                let typed = Typed {
                    token_ref: String::new(),
                    schedule,
                    timezone,
                    allowed_domains: form.allowed_domains,
                };
                settings_page(&state, &signed, i, Some(typed), errors, false).await
            }
            Err(internal) => views::internal(internal),
        },
    }
}

pub async fn set_enabled(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<forms::EnabledForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let Some(enabled) = form.wanted() else {
        return views::message(
            &signed,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not understood",
            "The form asked neither to enable nor to disable the instance: use the buttons on its settings page.",
        );
    };
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match manage::set_enabled(&state.pool, &i, enabled, &Actor::console(&signed.name)).await {
        Ok(()) => done(id, if enabled { "enabled" } else { "disabled" }),
        Err(e) => views::internal(e),
    }
}

#[derive(Template)]
#[template(path = "console/instance_remove.html")]
struct RemovePage {
    chrome: Chrome,
    i: Instance,
    impact: RemovalImpact,
    typed: String,
    error: String,
}

async fn remove_page(
    state: &ConsoleState,
    signed: &Signed,
    i: Instance,
    typed: String,
    error: String,
) -> Response {
    let impact = match manage::removal_impact(&state.pool, i.id).await {
        Ok(x) => x,
        Err(e) => return views::internal(e),
    };
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    views::with_status(
        status,
        &RemovePage {
            chrome: Chrome::for_user(signed),
            i,
            impact,
            typed,
            error,
        },
    )
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
        Ok(i) => remove_page(&state, &signed, i, String::new(), String::new()).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    confirm: String,
}

pub async fn remove(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    if form.confirm.trim() != i.name {
        let error = format!(
            "type the instance's name exactly ({}) to confirm the removal",
            i.name
        );
        return remove_page(&state, &signed, i, form.confirm, error).await;
    }
    match manage::remove(&state.pool, &i, &Actor::console(&signed.name)).await {
        Ok(_) => Redirect::to("/?done=removed").into_response(),
        Err(e) => views::internal(e),
    }
}

/// One tunable key on the settings page: the deployment's value, the instance's (or what
/// was typed) and what is wrong with it.
pub struct OverrideRow {
    pub key: String,
    pub list: bool,
    pub default: String,
    pub value: String,
    pub error: String,
}

/// The check-overrides section of the settings page.
#[derive(Default)]
pub struct OverridesForm {
    pub rows: Vec<OverrideRow>,
    /// A problem not about one key (or the stored overrides being unusable), or empty.
    pub general: String,
    /// True when this is a refused submission (the page answers 422).
    pub refused: bool,
}

impl OverridesForm {
    fn stored(base: &crate::checks::CheckSettings, current: &serde_json::Value) -> Self {
        let rows = overrides::rows(base, current)
            .into_iter()
            .map(|(t, default, value)| OverrideRow {
                list: t.kind == Kind::List,
                key: t.key,
                default,
                value: value.unwrap_or_default(),
                error: String::new(),
            })
            .collect();
        // Scans ignore stored overrides that do not apply (written by SQL, say): say so.
        let general = match overrides::apply(base, current, &[]) {
            Ok(_) => String::new(),
            Err(e) => format!(
                "The stored overrides are not valid ({e}), so scans use the configured defaults: correct or clear that key."
            ),
        };
        Self {
            rows,
            general,
            refused: false,
        }
    }
}

/// Form field of a tunable key.
fn override_field(key: &str) -> String {
    format!("ov_{key}")
}

/// Admin: saves the check overrides; an empty field is the configured default.
pub async fn set_overrides(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    // Only the keys the form sent: a key it left out keeps its stored value.
    let edits: Vec<Edit> = overrides::tunables()
        .into_iter()
        .filter_map(|t| {
            let name = override_field(&t.key);
            let value = fields.iter().find(|(k, _)| *k == name)?.1.clone();
            Some(Edit {
                key: t.key,
                value: Some(value),
            })
        })
        .collect();
    let actor = Actor::console(&signed.name);
    let err = match manage::set_check_overrides(&state.pool, &i, &ops.checks, &edits, &actor).await
    {
        Ok(c) if c.changed => return done(id, "overrides"),
        Ok(_) => return done(id, "overrides_unchanged"),
        Err(OverridesError::Invalid(e)) => e,
        Err(OverridesError::Gone(_)) => return views::not_found(&signed, "instance"),
        Err(OverridesError::Db(e)) => return views::internal(e),
    };
    let current = match instances::check_overrides(&state.pool, i.id).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return views::internal(e),
    };
    let mut form = OverridesForm::stored(&ops.checks, &current);
    form.refused = true;
    form.general = String::new();
    for row in &mut form.rows {
        if let Some(e) = edits.iter().find(|e| e.key == row.key) {
            row.value = e.value.clone().unwrap_or_default();
        }
        if err.key() == Some(row.key.as_str()) {
            row.error = err.reason();
        }
    }
    if !form.rows.iter().any(|r| !r.error.is_empty()) {
        form.general = err.to_string();
    }
    let (schedule, timezone) = split_schedule(i.schedule.as_deref());
    let typed = Typed {
        token_ref: String::new(),
        schedule,
        timezone,
        allowed_domains: i.allowed_domains.join(", "),
    };
    settings_page_with(
        &state,
        &signed,
        i,
        Some(typed),
        FieldErrors::default(),
        false,
        Some(form),
    )
    .await
}

/// `?done=` on the instance page: which action just succeeded (a fixed word, never data).
#[derive(Deserialize, Default)]
pub struct Done {
    pub done: Option<String>,
}

pub fn done_notice(q: &Query<Done>) -> &'static str {
    match q.done.as_deref() {
        Some("onboarded") => "Connected: the token is valid and stored sealed (or as its reference). The first scan is queued.",
        Some("scan") => "Scan queued: a running daemon picks it up within seconds.",
        Some("token") => "Token replaced and verified; a scan with it is queued.",
        Some("schedule") => "Schedule changed.",
        Some("domains") => "Allowed domains changed; the next scan applies them.",
        Some("enabled") => "Enabled: a scan is queued.",
        Some("disabled") => "Disabled: no scheduled scans until it is enabled again; findings are kept.",
        Some("overrides") => "Check overrides saved; the next scan uses them.",
        Some("overrides_unchanged") => "No check override changed.",
        _ => "",
    }
}

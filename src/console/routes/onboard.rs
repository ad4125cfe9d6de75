//! The onboarding wizard (admin): a guide to the Developer Hub, then one form whose
//! "Connect" runs `crate::onboard::onboard`, the code behind `intercom-sspm instance add`.
//! The token is a password field: it is never rendered back, never in a URL, never in the
//! session; a form shown again after an error asks for it again and says why.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::audit::Actor;
use crate::console::auth::Signed;
use crate::console::forms::{self, FieldErrors};
use crate::console::role::Role;
use crate::console::state::{ConsoleState, Ops};
use crate::console::views::{self, Chrome};
use crate::onboard::{self, OnboardError, OnboardRequest};
use crate::region::Region;

/// What the user typed, minus the token.
#[derive(Debug, Default, Clone)]
pub struct Typed {
    pub name: String,
    pub region: String,
    pub token_ref: String,
    pub allowed_domains: String,
    pub schedule: String,
    pub timezone: String,
    /// The button pressed: "check", "preview" or "connect" (the wrong-region retry
    /// repeats it, so a retried check checks again instead of connecting).
    pub step: &'static str,
}

#[derive(Template)]
#[template(path = "console/onboard.html")]
struct OnboardPage {
    chrome: Chrome,
    f: Typed,
    errors: FieldErrors,
    regions: [&'static str; 3],
    default_schedule: String,
    preview: Vec<String>,
    /// Set after a wrong-region answer: the region that accepts the token.
    other_region: Option<String>,
    /// A token was typed but this page cannot show it again.
    token_dropped: bool,
    /// After "Check token": what /me said (workspace, owner's domain).
    checked: Option<String>,
    has_key: bool,
}

#[derive(Deserialize)]
pub struct OnboardForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    region: String,
    token: Option<SecretString>,
    #[serde(default)]
    token_ref: String,
    #[serde(default)]
    allowed_domains: String,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    timezone: String,
    /// "preview" re-renders with the schedule preview, "check" validates the token and
    /// prefills the allowed domains; anything else connects.
    #[serde(default)]
    step: String,
}

/// Adds a validation error at its field (a storage error, impossible here, at the top).
fn note(errors: &mut FieldErrors, e: OnboardError) {
    match forms::field_of(&e) {
        Ok((field, msg)) => errors.add(field, msg),
        Err(_) => errors.add("general", "the database could not be reached: try again"),
    }
}

/// The actions' settings; the error is the page to answer when the console was built
/// without them (boxed: a `Response` is large).
pub fn ops<'a>(state: &'a ConsoleState, signed: &Signed) -> Result<&'a Ops, Box<Response>> {
    state.ops.as_ref().ok_or_else(|| {
        Box::new(views::message(
            signed,
            StatusCode::SERVICE_UNAVAILABLE,
            "Actions are unavailable",
            "This console was started without the scanner's settings: serve it with `intercom-sspm run` or `intercom-sspm console`.",
        ))
    })
}

fn render(
    signed: &Signed,
    ops: &Ops,
    f: Typed,
    errors: FieldErrors,
    other_region: Option<Region>,
    token_dropped: bool,
) -> Response {
    render_checked(signed, ops, f, errors, other_region, token_dropped, None)
}

fn render_checked(
    signed: &Signed,
    ops: &Ops,
    f: Typed,
    errors: FieldErrors,
    other_region: Option<Region>,
    token_dropped: bool,
    checked: Option<String>,
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let preview = forms::preview(&f.schedule, &f.timezone, &ops.default_schedule);
    views::with_status(
        status,
        &OnboardPage {
            chrome: Chrome::for_user(signed),
            regions: ["us", "eu", "au"],
            default_schedule: ops.default_schedule.clone(),
            preview,
            other_region: other_region.map(|r| r.as_str().to_string()),
            token_dropped,
            checked,
            has_key: ops.keyring.is_some(),
            f,
            errors,
        },
    )
}

pub async fn form(State(state): State<Arc<ConsoleState>>, signed: Signed) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let f = Typed {
        region: "us".into(),
        ..Default::default()
    };
    render(&signed, ops, f, FieldErrors::default(), None, false)
}

pub async fn submit(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Form(form): Form<OnboardForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let token = form.token.filter(|t| !t.expose_secret().trim().is_empty());
    let token_dropped = token.is_some();
    let f = Typed {
        name: form.name.trim().to_string(),
        region: form.region.trim().to_ascii_lowercase(),
        token_ref: form.token_ref.trim().to_string(),
        allowed_domains: form.allowed_domains,
        schedule: form.schedule.trim().to_string(),
        timezone: form.timezone.trim().to_string(),
        step: match form.step.as_str() {
            "check" => "check",
            "preview" => "preview",
            _ => "connect",
        },
    };
    if form.step == "preview" {
        return render(&signed, ops, f, FieldErrors::default(), None, token_dropped);
    }
    // Every field first, so the page names all that is wrong at once (the same rules
    // `onboard` applies again below).
    let mut errors = FieldErrors::default();
    if let Err(e) = onboard::validate_name(&f.name) {
        note(&mut errors, e);
    }
    let region = match f.region.parse::<Region>() {
        Ok(r) => Some(r),
        Err(e) => {
            errors.add("region", e.to_string());
            None
        }
    };
    let domains_raw = vec![f.allowed_domains.clone()];
    if let Err(e) = onboard::normalize_domains(&domains_raw) {
        note(&mut errors, e);
    }
    let schedule = match onboard::compose_schedule(Some(&f.schedule), Some(&f.timezone))
        .and_then(|s| onboard::validate_schedule(s.as_deref()))
    {
        Ok(s) => s,
        Err(e) => {
            note(&mut errors, e);
            None
        }
    };
    let input = forms::token_input(
        token,
        &f.token_ref,
        ops.token_key_file.as_deref(),
        "paste the access token (or give a token reference): it is on the app's Authentication page in the Developer Hub",
        &mut errors,
    );
    if form.step == "check" {
        return check(&signed, ops, f, region, input, errors, token_dropped).await;
    }
    let (Some(region), Some(input), true) = (region, input, errors.is_empty()) else {
        return render(&signed, ops, f, errors, None, token_dropped);
    };
    let actor = Actor::console(&signed.name);
    let request = OnboardRequest {
        name: f.name.clone(),
        region,
        token: input,
        schedule,
        allowed_domains: domains_raw,
    };
    match onboard::onboard(
        &state.pool,
        &ops.client,
        ops.keyring.as_ref(),
        request,
        &actor,
    )
    .await
    {
        Ok(instance) => {
            tracing::info!(user = %signed.name, instance = %instance.name, "onboarded an instance in the console");
            Redirect::to(&format!("/instances/{}?done=onboarded", instance.id)).into_response()
        }
        Err(e) => connect_error(&signed, ops, f, e, token_dropped),
    }
}

/// "Check token": `GET /me` through the code Connect uses, storing nothing, and the form
/// again with the allowed domains prefilled with the owner's registrable domain (when
/// empty). The token is not carried over: echoing it into the page (a hidden field) or
/// keeping it in the session would break the rule that it is never rendered back nor
/// kept, so the page says "token checked, paste it again to connect". Only the field
/// errors of the token and region count here; the rest is for Connect.
async fn check(
    signed: &Signed,
    ops: &Ops,
    mut f: Typed,
    region: Option<Region>,
    input: Option<onboard::TokenInput>,
    errors: FieldErrors,
    token_dropped: bool,
) -> Response {
    let mut token_errors = FieldErrors::default();
    for (field, msg) in errors.0 {
        if matches!(field, "token" | "token_ref" | "region" | "general") {
            token_errors.add(field, msg);
        }
    }
    let (Some(region), Some(input), true) = (region, input, token_errors.is_empty()) else {
        return render(signed, ops, f, token_errors, None, token_dropped);
    };
    let plaintext = match input {
        onboard::TokenInput::Plain(t) => t,
        onboard::TokenInput::Reference(r) => match r.resolve() {
            Ok(t) => t,
            Err(e) => return connect_error(signed, ops, f, e.into(), token_dropped),
        },
    };
    match onboard::check_token(&ops.client, region, &plaintext).await {
        Ok(c) => {
            let mut said = format!(
                "Token checked: it reads workspace {} ({}) in region {}.",
                c.workspace_name.as_deref().unwrap_or("(unnamed)"),
                c.workspace_id,
                region.as_str().to_ascii_uppercase()
            );
            match (&c.owner_domain, f.allowed_domains.trim().is_empty()) {
                (Some(d), true) => {
                    f.allowed_domains = d.clone();
                    said.push_str(&format!(
                        " Allowed domains are set to the token owner's domain, {d}: add others if your teammates use them."
                    ));
                }
                (Some(d), false) => said.push_str(&format!(
                    " The token owner's domain is {d}; your allowed domains are kept."
                )),
                (None, _) => said.push_str(
                    " The token owner's address has no registrable domain: enter the allowed domains yourself.",
                ),
            }
            if f.token_ref.is_empty() {
                said.push_str(" Paste the token again to connect: the console never keeps it.");
            }
            render_checked(
                signed,
                ops,
                f,
                FieldErrors::default(),
                None,
                false,
                Some(said),
            )
        }
        Err(e) => connect_error(signed, ops, f, e, token_dropped),
    }
}

/// The form again after a failed check or connect, the error at its field; a wrong
/// region gets the one-click retry in the region that accepts the token.
fn connect_error(
    signed: &Signed,
    ops: &Ops,
    f: Typed,
    e: OnboardError,
    token_dropped: bool,
) -> Response {
    let other = match &e {
        OnboardError::WrongRegion { actual, .. } => Some(*actual),
        _ => None,
    };
    let mut errors = FieldErrors::default();
    match forms::field_of(&e) {
        Ok((field, msg)) => {
            let msg = match &e {
                        OnboardError::WrongRegion { given, actual, .. } => format!(
                            "the token is not valid for region {given} but is accepted by region {actual}: the workspace is hosted in {actual}"
                        ),
                        _ => msg,
                    };
            errors.add(field, msg)
        }
        Err(internal) => return views::internal(internal),
    }
    render(signed, ops, f, errors, other, token_dropped)
}

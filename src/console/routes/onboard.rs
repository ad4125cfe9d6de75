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
    /// "preview" re-renders with the schedule preview; anything else connects.
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
        Err(e) => {
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
            render(&signed, ops, f, errors, other, token_dropped)
        }
    }
}

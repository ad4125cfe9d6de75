//! The attestation page of one instance: its attestations of manual controls (expired
//! ones marked), and for operators a form to record one and a remove button behind a
//! confirmation page. Recording and removing run `crate::attest`, the CLI's `attest add |
//! remove` code (same rules, one audit row by the signed-in user in the change's
//! transaction); the CSRF middleware has already refused any POST without the token.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use crate::attest::{self, AttestError, DEFAULT_VALIDITY_DAYS};
use crate::audit::Actor;
use crate::console::auth::Signed;
use crate::console::forms::FieldErrors;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::db::attestations::{self, AttestationError, AttestationRow};
use crate::db::instances::{self, Instance};

pub struct Row {
    pub id: Uuid,
    pub control_id: String,
    pub title: String,
    pub evidence: String,
    pub author: String,
    pub attested: String,
    pub expires: String,
    pub expired: bool,
}

pub struct ControlOption {
    pub id: &'static str,
    pub title: &'static str,
    pub selected: bool,
}

/// What was typed in the record form.
#[derive(Debug, Clone, Default)]
pub struct Typed {
    pub control: String,
    pub evidence: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "console/attestations.html")]
struct ListPage {
    chrome: Chrome,
    i: Instance,
    rows: Vec<Row>,
    controls: Vec<ControlOption>,
    f: Typed,
    errors: FieldErrors,
    can_attest: bool,
    notice: &'static str,
    default_days: i64,
}

#[derive(Template)]
#[template(path = "console/attestation_remove.html")]
struct RemovePage {
    chrome: Chrome,
    i: Instance,
    a: Row,
}

async fn load(state: &ConsoleState, signed: &Signed, id: Uuid) -> Result<Instance, Response> {
    match instances::find_by_id(&state.pool, id).await {
        Ok(Some(i)) => Ok(i),
        Ok(None) => Err(views::not_found(signed, "instance")),
        Err(e) => Err(views::internal(e)),
    }
}

fn title_of(control: &str) -> String {
    crate::checks::meta(control)
        .map(|m| m.title.to_string())
        .unwrap_or_else(|| "(control no longer in the catalog)".into())
}

fn row(a: AttestationRow) -> Row {
    Row {
        title: title_of(&a.control_id),
        expired: a.expires_at <= Utc::now(),
        attested: views::when(&Some(a.attested_at)),
        expires: views::when(&Some(a.expires_at)),
        id: a.id,
        control_id: a.control_id,
        evidence: a.evidence,
        author: a.author,
    }
}

async fn list_page(
    state: &ConsoleState,
    signed: &Signed,
    i: Instance,
    f: Typed,
    errors: FieldErrors,
    notice: &'static str,
) -> Response {
    let rows = match attestations::list(&state.pool, Some(i.id)).await {
        Ok(r) => r.into_iter().map(row).collect(),
        Err(e) => return views::internal(e),
    };
    let controls = attest::manual_controls()
        .map(|m| ControlOption {
            id: m.id,
            title: m.title,
            selected: m.id == f.control,
        })
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    views::with_status(
        status,
        &ListPage {
            chrome: Chrome::for_user(signed),
            can_attest: signed.role.allows(Role::Operator),
            i,
            rows,
            controls,
            f,
            errors,
            notice,
            default_days: DEFAULT_VALIDITY_DAYS,
        },
    )
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    /// Preselects the control (the instance page links each manual check here).
    control: Option<String>,
    done: Option<String>,
}

/// Viewer: the list; operators also get the form.
pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let notice = match q.done.as_deref() {
        Some("recorded") => "Attestation recorded: the next scan reports the control as passing.",
        Some("removed") => "Attestation removed: the control is not evaluated from the next scan.",
        _ => "",
    };
    let f = Typed {
        control: q.control.unwrap_or_default(),
        evidence: String::new(),
        expires: format!("{DEFAULT_VALIDITY_DAYS}d"),
    };
    list_page(&state, &signed, i, f, FieldErrors::default(), notice).await
}

#[derive(Deserialize)]
pub struct RecordForm {
    #[serde(default)]
    control: String,
    #[serde(default)]
    evidence: String,
    #[serde(default)]
    expires: String,
}

/// Where an attestation error is shown on the form, in the console's words (the error's
/// own message names the CLI's flags). `Err` is a storage failure.
fn field_of(e: &AttestError) -> Result<(&'static str, String), String> {
    Ok(match e {
        AttestError::NotManual { .. } => ("control", "choose one of the manual controls".into()),
        AttestError::NoEvidence => (
            "evidence",
            "say what proves the control is in place (a ticket, where the screenshot is kept, who reviewed it)".into(),
        ),
        AttestError::Expiry(x) => ("expires", x.reason()),
        AttestError::Stored(AttestationError::Duplicate { existing, until, .. }) => (
            "control",
            format!("already attested on this instance until {until} (attestation {existing}): remove that one first to record a new one"),
        ),
        AttestError::Stored(AttestationError::Db(d)) => return Err(d.to_string()),
    })
}

/// Operator: records an attestation; every bad field is named at once, what was typed kept.
pub async fn record(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<RecordForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Operator) {
        return r;
    }
    let i = match load(&state, &signed, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let typed = Typed {
        control: form.control.trim().to_string(),
        evidence: form.evidence.clone(),
        expires: form.expires.trim().to_string(),
    };
    // Empty expiry: the CLI's default, as when `attest add` has no --expires.
    let expires = Some(typed.expires.as_str()).filter(|s| !s.is_empty());
    let now = Utc::now();
    let control = attest::control(&typed.control);
    let evidence = attest::evidence(&form.evidence);
    let expires_at = attest::expires_at(expires, now);
    let mut errors = FieldErrors::default();
    for e in [
        control.as_ref().err(),
        evidence.as_ref().err(),
        expires_at.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        match field_of(e) {
            Ok((f, m)) => errors.add(f, m),
            Err(internal) => return views::internal(internal),
        }
    }
    let (Ok(control), Ok(evidence), Ok(expires_at)) = (control, evidence, expires_at) else {
        return list_page(&state, &signed, i, typed, errors, "").await;
    };
    let new = attest::NewAttestation {
        control: control.id,
        evidence,
        expires_at,
    };
    let actor = Actor::console(&signed.name);
    match attest::add(&state.pool, &i, &new, &signed.name, &actor).await {
        Ok(_) => {
            Redirect::to(&format!("/instances/{id}/attestations?done=recorded")).into_response()
        }
        Err(e) => match field_of(&e) {
            Ok((f, m)) => {
                errors.add(f, m);
                list_page(&state, &signed, i, typed, errors, "").await
            }
            Err(internal) => views::internal(internal),
        },
    }
}

async fn load_attestation(
    state: &ConsoleState,
    signed: &Signed,
    id: Uuid,
    aid: Uuid,
) -> Result<(Instance, AttestationRow), Response> {
    let i = load(state, signed, id).await?;
    match attestations::find(&state.pool, i.id, aid).await {
        Ok(Some(a)) => Ok((i, a)),
        Ok(None) => Err(views::not_found(signed, "attestation")),
        Err(e) => Err(views::internal(e)),
    }
}

/// Operator: the confirmation step before a removal.
pub async fn remove_form(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path((id, aid)): Path<(Uuid, Uuid)>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Operator) {
        return r;
    }
    match load_attestation(&state, &signed, id, aid).await {
        Ok((i, a)) => views::page(&RemovePage {
            chrome: Chrome::for_user(&signed),
            i,
            a: row(a),
        }),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    confirm: String,
}

/// Operator: removes it once confirmed; a POST without the confirmation shows the
/// confirmation page instead.
pub async fn remove(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path((id, aid)): Path<(Uuid, Uuid)>,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Operator) {
        return r;
    }
    let (i, a) = match load_attestation(&state, &signed, id, aid).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if form.confirm != "yes" {
        return views::page(&RemovePage {
            chrome: Chrome::for_user(&signed),
            i,
            a: row(a),
        });
    }
    let actor = Actor::console(&signed.name);
    let removed = async {
        let mut tx = state.pool.begin().await?;
        let r = attest::remove(&mut tx, a.id, &actor).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(r)
    }
    .await;
    match removed {
        Ok(Some(_)) => {
            Redirect::to(&format!("/instances/{id}/attestations?done=removed")).into_response()
        }
        Ok(None) => views::not_found(&signed, "attestation"),
        Err(e) => views::internal(e),
    }
}

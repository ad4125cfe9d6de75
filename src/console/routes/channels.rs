//! Notification channels (admin only): the list, a form per kind to add one, the edit
//! form, "send test", enable / disable, and remove after a confirmation step. Every rule
//! is `crate::notify::channel_input`'s (the CLI's); secrets are write-only: a secret field
//! left empty keeps what is stored, and no page ever shows a URL, a key or a secret
//! except a webhook's new signing secret, once, on the page answering the change.

use std::collections::HashMap;
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
use crate::console::routes::onboard::ops;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::notify::channel_input::{self, split_list, InputError, RuleFields, TargetFields};
use crate::notify::channels::{self, Channel, ChannelError, ChannelKind, ChannelView};
use crate::notify::outbox::{self, LastMessage};
use crate::notify::rules::Event;
use crate::notify::send::{Outcome, Sender};

const KINDS: [&str; 4] = ["webhook", "slack", "email", "pagerduty"];
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// One row of the list: the view `channel list` prints, plus the newest message's status.
pub struct ListRow {
    pub v: ChannelView,
    pub last: String,
}

#[derive(Template)]
#[template(path = "console/channels.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<ListRow>,
    notice: &'static str,
}

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> &'static str {
    match done {
        Some("added") => "Channel added.",
        Some("saved") => "Channel saved.",
        Some("enabled") => "Channel enabled: messages waiting for it are sent.",
        Some("disabled") => "Channel disabled: scans stop enqueuing for it; queued messages wait.",
        Some("removed") => "Channel removed, with its queued and past messages.",
        _ => "",
    }
}

fn last_words(m: &LastMessage) -> String {
    let when = m.at.format("%Y-%m-%d %H:%M UTC");
    let code = m
        .last_status_code
        .map(|c| format!(", code {c}"))
        .unwrap_or_default();
    match m.status.as_str() {
        "delivered" => format!("delivered {when} ({} message{code})", m.kind),
        "pending" => format!("{} message waiting since {when}{code}", m.kind),
        other => format!(
            "{other} {when} ({} message{code}): {}",
            m.kind,
            m.last_error.as_deref().unwrap_or("no error recorded")
        ),
    }
}

pub async fn list(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<Done>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let all = match state.pool.acquire().await {
        Ok(mut conn) => channels::list(&mut conn).await,
        Err(e) => Err(e),
    };
    let all = match all {
        Ok(a) => a,
        Err(e) => return views::internal(e),
    };
    let last: HashMap<Uuid, LastMessage> = match outbox::last_per_channel(&state.pool).await {
        Ok(l) => l.into_iter().map(|m| (m.channel_id, m)).collect(),
        Err(e) => return views::internal(e),
    };
    let rows = all
        .iter()
        .map(|c| ListRow {
            v: ChannelView::from(c),
            last: last
                .get(&c.id)
                .map(last_words)
                .unwrap_or_else(|| "no message yet".into()),
        })
        .collect();
    views::page(&ListPage {
        chrome: Chrome::for_user(&signed),
        rows,
        notice: notice(q.done.as_deref()),
    })
}

/// What was typed in a channel form, to show it again: never the URL or the routing key.
#[derive(Debug, Clone, Default)]
pub struct Typed {
    pub kind: String,
    pub name: String,
    pub format: String,
    pub url_ref: String,
    pub email_from: String,
    pub email_to: String,
    pub min_severity: String,
    pub events: Vec<&'static str>,
    pub checks: String,
    pub exclude_checks: String,
    pub instances: String,
    pub digest: String,
}

impl Typed {
    fn of(c: &Channel) -> Self {
        Typed {
            kind: c.kind.as_str().into(),
            name: c.name.clone(),
            format: c.format.map(|f| f.as_str()).unwrap_or("json").into(),
            url_ref: String::new(),
            email_from: c.email_from.clone().unwrap_or_default(),
            email_to: c.email_to.join(", "),
            min_severity: c.rules.min_severity.as_str().into(),
            events: c.rules.events.iter().map(|e| e.as_str()).collect(),
            checks: c.rules.checks.join(", "),
            exclude_checks: c.rules.exclude_checks.join(", "),
            instances: c.rules.instances.join(", "),
            digest: c.rules.digest.clone().unwrap_or_default(),
        }
    }

    fn fresh(kind: ChannelKind) -> Self {
        let rules = crate::notify::rules::Rules::default();
        Typed {
            kind: kind.as_str().into(),
            format: "json".into(),
            min_severity: rules.min_severity.as_str().into(),
            events: rules.events.iter().map(|e| e.as_str()).collect(),
            ..Default::default()
        }
    }

    pub fn on(&self, event: &str) -> bool {
        self.events.contains(&event)
    }
}

#[derive(Template)]
#[template(path = "console/channel_form.html")]
struct FormPage {
    chrome: Chrome,
    /// None: the new-channel form.
    channel: Option<ChannelView>,
    f: Typed,
    errors: FieldErrors,
    secret_dropped: bool,
    has_key: bool,
    notice: String,
    kinds: [&'static str; 4],
    severities: [&'static str; 5],
    events: [&'static str; 4],
}

#[allow(clippy::too_many_arguments)]
fn form_page(
    state: &ConsoleState,
    signed: &Signed,
    channel: Option<&Channel>,
    f: Typed,
    errors: FieldErrors,
    secret_dropped: bool,
    notice: String,
    status: StatusCode,
) -> Response {
    let status = if errors.is_empty() {
        status
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    views::with_status(
        status,
        &FormPage {
            chrome: Chrome::for_user(signed),
            channel: channel.map(ChannelView::from),
            f,
            errors,
            secret_dropped,
            has_key: state.ops.as_ref().is_some_and(|o| o.keyring.is_some()),
            notice,
            kinds: KINDS,
            severities: SEVERITIES,
            events: ["opened", "reopened", "resolved", "health"],
        },
    )
}

#[derive(Deserialize)]
pub struct KindQuery {
    kind: Option<String>,
}

pub async fn new_form(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<KindQuery>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let kind = q
        .kind
        .as_deref()
        .and_then(ChannelKind::parse)
        .unwrap_or(ChannelKind::Webhook);
    form_page(
        &state,
        &signed,
        None,
        Typed::fresh(kind),
        FieldErrors::default(),
        false,
        String::new(),
        StatusCode::OK,
    )
}

/// The channel form as posted. Secrets arrive as `SecretString` and are never echoed.
#[derive(Deserialize)]
pub struct ChannelForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    format: String,
    url: Option<SecretString>,
    #[serde(default)]
    url_ref: String,
    #[serde(default)]
    email_from: String,
    #[serde(default)]
    email_to: String,
    routing_key: Option<SecretString>,
    #[serde(default)]
    rotate_secret: String,
    #[serde(default)]
    min_severity: String,
    #[serde(default)]
    on_opened: String,
    #[serde(default)]
    on_reopened: String,
    #[serde(default)]
    on_resolved: String,
    #[serde(default)]
    on_health: String,
    #[serde(default)]
    checks: String,
    #[serde(default)]
    exclude_checks: String,
    #[serde(default)]
    instances: String,
    #[serde(default)]
    digest: String,
}

impl ChannelForm {
    fn events(&self) -> Vec<&'static str> {
        [
            (&self.on_opened, Event::Opened),
            (&self.on_reopened, Event::Reopened),
            (&self.on_resolved, Event::Resolved),
            (&self.on_health, Event::Health),
        ]
        .into_iter()
        .filter(|(v, _)| !v.is_empty())
        .map(|(_, e)| e.as_str())
        .collect()
    }

    fn typed(&self, kind: ChannelKind) -> Typed {
        Typed {
            kind: kind.as_str().into(),
            name: self.name.trim().into(),
            format: self.format.trim().into(),
            url_ref: self.url_ref.trim().into(),
            email_from: self.email_from.trim().into(),
            email_to: self.email_to.trim().into(),
            min_severity: self.min_severity.trim().into(),
            events: self.events(),
            checks: self.checks.trim().into(),
            exclude_checks: self.exclude_checks.trim().into(),
            instances: self.instances.trim().into(),
            digest: self.digest.trim().into(),
        }
    }

    fn secret_typed(&self) -> bool {
        [&self.url, &self.routing_key]
            .into_iter()
            .flatten()
            .any(|s| !s.expose_secret().trim().is_empty())
    }

    /// The shared input: only the fields of `kind` (the form shows no others), a secret
    /// left empty as "not given" (keep it, on an edit).
    fn fields(&self, kind: ChannelKind) -> (TargetFields, RuleFields) {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let secret = |s: &Option<SecretString>| {
            s.as_ref()
                .filter(|s| !s.expose_secret().trim().is_empty())
                .map(|s| SecretString::from(s.expose_secret().to_string()))
        };
        let email = kind == ChannelKind::Email;
        let target = TargetFields {
            format: given(&self.format).filter(|_| kind == ChannelKind::Webhook),
            url: secret(&self.url),
            url_ref: given(&self.url_ref),
            email_from: email.then(|| self.email_from.trim().to_string()),
            email_to: email.then(|| split_list(&self.email_to)),
            routing_key: secret(&self.routing_key).filter(|_| kind == ChannelKind::Pagerduty),
            rotate_secret: !self.rotate_secret.is_empty() && kind == ChannelKind::Webhook,
        };
        let rules = RuleFields {
            min_severity: Some(self.min_severity.clone()),
            on: Some(self.events().join(",")),
            checks: Some(split_list(&self.checks)),
            exclude_checks: Some(split_list(&self.exclude_checks)),
            instances: Some(split_list(&self.instances)),
            digest: Some(self.digest.clone()),
        };
        (target, rules)
    }
}

fn field_errors(errors: &[InputError]) -> FieldErrors {
    let mut out = FieldErrors::default();
    for e in errors {
        if !out.has(e.field()) {
            out.add(e.field(), e.to_string());
        }
    }
    out
}

#[derive(Template)]
#[template(path = "console/channel_secret.html")]
struct SecretPage {
    chrome: Chrome,
    name: String,
    heading: &'static str,
    secret: String,
}

/// The page showing a new signing secret, once: it is the answer to the POST (never a
/// redirect target, never in a URL), and `no-store` keeps it out of caches.
fn secret_page(signed: &Signed, name: &str, heading: &'static str, s: &SecretString) -> Response {
    views::page(&SecretPage {
        chrome: Chrome::for_user(signed),
        name: name.to_string(),
        heading,
        secret: s.expose_secret().to_string(),
    })
}

pub async fn create(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Form(form): Form<ChannelForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let Some(kind) = ChannelKind::parse(form.kind.trim()) else {
        let mut errors = FieldErrors::default();
        errors.add("kind", "choose a kind: webhook, slack, email or pagerduty");
        let f = form.typed(ChannelKind::Webhook);
        return form_page(
            &state,
            &signed,
            None,
            f,
            errors,
            false,
            String::new(),
            StatusCode::OK,
        );
    };
    let typed = form.typed(kind);
    let dropped = form.secret_typed();
    let (target, rules) = form.fields(kind);
    drop(form);
    let valid =
        match channel_input::validate_new(&typed.name, kind, &target, &rules, ops.keyring.as_ref())
        {
            Ok(v) => v,
            Err(errs) => {
                let errors = field_errors(&errs);
                return form_page(
                    &state,
                    &signed,
                    None,
                    typed,
                    errors,
                    dropped,
                    String::new(),
                    StatusCode::OK,
                );
            }
        };
    drop(target);
    let actor = Actor::console(&signed.name);
    let stored = async {
        let mut tx = state.pool.begin().await?;
        channels::insert(&mut tx, &valid.as_new()).await?;
        let c = channels::get(&mut *tx, &valid.id.to_string()).await?;
        audit::record(
            &mut tx,
            &actor,
            "channel.add",
            &c.name,
            channel_input::audit_details(&c),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, ChannelError>(c)
    }
    .await;
    match stored {
        Ok(c) => match &valid.signing_secret {
            Some(s) => secret_page(&signed, &c.name, "Channel added", s),
            None => Redirect::to("/channels?done=added").into_response(),
        },
        Err(ChannelError::Duplicate(n)) => {
            let mut errors = FieldErrors::default();
            errors.add(
                "name",
                format!("a channel named {n:?} already exists: choose another name"),
            );
            form_page(
                &state,
                &signed,
                None,
                typed,
                errors,
                dropped,
                String::new(),
                StatusCode::OK,
            )
        }
        Err(e) => views::internal(e),
    }
}

async fn load(state: &ConsoleState, signed: &Signed, id: Uuid) -> Result<Channel, Response> {
    match channels::get_by_id(&state.pool, id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(views::not_found(signed, "channel")),
        Err(e) => Err(views::internal(e)),
    }
}

pub async fn edit_form(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    match load(&state, &signed, id).await {
        Ok(c) => form_page(
            &state,
            &signed,
            Some(&c),
            Typed::of(&c),
            FieldErrors::default(),
            false,
            String::new(),
            StatusCode::OK,
        ),
        Err(r) => r,
    }
}

pub async fn save(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<ChannelForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let mut c = match load(&state, &signed, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut typed = form.typed(c.kind);
    typed.name = c.name.clone();
    let dropped = form.secret_typed();
    let (target, rules) = form.fields(c.kind);
    drop(form);
    let original = c.clone();
    let changed = match channel_input::apply_change(&mut c, &target, &rules, ops.keyring.as_ref()) {
        Ok(ch) => ch,
        Err(errs) => {
            let errors = field_errors(&errs);
            return form_page(
                &state,
                &signed,
                Some(&original),
                typed,
                errors,
                dropped,
                String::new(),
                StatusCode::OK,
            );
        }
    };
    drop(target);
    let actor = Actor::console(&signed.name);
    let saved = async {
        let mut tx = state.pool.begin().await?;
        channels::update(&mut tx, &c).await?;
        let mut details = channel_input::audit_details(&c);
        details["changed"] = json!(changed.fields);
        audit::record(&mut tx, &actor, "channel.set", &c.name, details).await?;
        tx.commit().await?;
        Ok::<_, ChannelError>(())
    }
    .await;
    match (saved, &changed.signing_secret) {
        (Ok(()), Some(s)) => secret_page(&signed, &c.name, "New signing secret", s),
        (Ok(()), None) => Redirect::to("/channels?done=saved").into_response(),
        (Err(e), _) => views::internal(e),
    }
}

/// "Send test": the `channel test` code path; the answer says what the receiver did.
pub async fn test(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let ops = match ops(&state, &signed) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let c = match load(&state, &signed, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sender = match Sender::new(&ops.notify) {
        Ok(s) => s.with_console_url(ops.public_url.clone()),
        Err(e) => return views::internal(e),
    };
    let (words, status) = match sender.send_test(&c, ops.keyring.as_ref()).await {
        Ok((message_id, outcome)) => {
            let details = channel_input::test_details(&c, message_id, &outcome);
            let recorded = match state.pool.acquire().await {
                Ok(mut conn) => {
                    audit::record(
                        &mut conn,
                        &Actor::console(&signed.name),
                        "channel.test",
                        &c.name,
                        details,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                return views::internal(e);
            }
            let ok = matches!(outcome, Outcome::Delivered { .. });
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (
                format!("Test message {message_id}: {}.", outcome.describe()),
                status,
            )
        }
        // The channel cannot be used as configured (its key or reference): say so.
        Err(
            e @ (ChannelError::Keyring { .. }
            | ChannelError::Open { .. }
            | ChannelError::Reference { .. }),
        ) => (
            format!("No test message was sent: {e}."),
            StatusCode::CONFLICT,
        ),
        Err(e) => return views::internal(e),
    };
    form_page(
        &state,
        &signed,
        Some(&c),
        Typed::of(&c),
        FieldErrors::default(),
        false,
        words,
        status,
    )
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
            "The form asked neither to enable nor to disable the channel: use the buttons on its page.",
        );
    };
    let actor = Actor::console(&signed.name);
    let done = async {
        let mut tx = state.pool.begin().await?;
        let c = channels::set_enabled(&mut tx, &id.to_string(), enabled).await?;
        let action = if enabled {
            "channel.enable"
        } else {
            "channel.disable"
        };
        audit::record(
            &mut tx,
            &actor,
            action,
            &c.name,
            channel_input::audit_details(&c),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, ChannelError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to(if enabled {
            "/channels?done=enabled"
        } else {
            "/channels?done=disabled"
        })
        .into_response(),
        Err(ChannelError::NotFound(_)) => views::not_found(&signed, "channel"),
        Err(e) => views::internal(e),
    }
}

#[derive(Template)]
#[template(path = "console/channel_remove.html")]
struct RemovePage {
    chrome: Chrome,
    c: ChannelView,
    messages: i64,
}

async fn remove_page(state: &ConsoleState, signed: &Signed, c: &Channel) -> Response {
    let messages = match outbox::count_for_channel(&state.pool, c.id).await {
        Ok(n) => n,
        Err(e) => return views::internal(e),
    };
    views::page(&RemovePage {
        chrome: Chrome::for_user(signed),
        c: ChannelView::from(c),
        messages,
    })
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
        Ok(c) => remove_page(&state, &signed, &c).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    confirm: String,
}

/// Removes only with `confirm=yes`, which only the confirmation page sends; any other
/// POST gets that page.
pub async fn remove(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Admin) {
        return r;
    }
    let c = match load(&state, &signed, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if form.confirm != "yes" {
        return remove_page(&state, &signed, &c).await;
    }
    let actor = Actor::console(&signed.name);
    let done = async {
        let mut tx = state.pool.begin().await?;
        channels::remove(&mut tx, c.id).await?;
        audit::record(
            &mut tx,
            &actor,
            "channel.remove",
            &c.name,
            channel_input::audit_details(&c),
        )
        .await?;
        tx.commit().await
    }
    .await;
    match done {
        Ok(()) => Redirect::to("/channels?done=removed").into_response(),
        Err(e) => views::internal(e),
    }
}

//! What a person gives to add or change a notification channel, validated once for both
//! doors (`intercom-sspm channel add | set` and the console's channel forms): one rule per
//! field, each error naming the field it belongs to, then sealed with the keyring the way
//! every channel secret is sealed (one document, the channel id as associated data).
//!
//! Secrets are write-only: `None` means "keep what is stored" on a change, and no error
//! message ever repeats a URL, a routing key or a signing secret.

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::channels::{
    generate_signing_secret, Channel, ChannelError, ChannelKind, NewChannel, Secrets, WebhookFormat,
};
use super::digest;
use super::rules::{self, Rules};
use super::send;
use crate::crypto::{Keyring, Sealed};
use crate::token::TokenRef;

/// One wrong field. `field()` is the form field (and the flag's stem) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Name(String),
    #[error("unknown webhook format {0:?}: use json, ocsf or cloudevents")]
    Format(String),
    #[error("{0} is for {1} channels")]
    NotForKind(&'static str, &'static str),
    #[error("{0}")]
    Url(String),
    #[error("a {0} channel needs its URL (or a file:/env: reference holding it)")]
    UrlMissing(ChannelKind),
    #[error("give the URL or a reference to it, not both")]
    UrlTwice,
    #[error("the URL reference {0:?} must be file:/absolute/path or env:VARIABLE_NAME")]
    UrlRef(String),
    #[error("an email channel needs a sender address (from): {0:?} is not an email address")]
    From(String),
    #[error("an email channel needs at least one recipient (to)")]
    ToMissing,
    #[error("recipient (to) {0:?} is not an email address")]
    To(String),
    #[error(
        "a PagerDuty channel needs the integration (routing) key of an Events API v2 integration"
    )]
    RoutingKeyMissing,
    #[error("{0}")]
    Severity(String),
    #[error("{0}")]
    Events(String),
    #[error("unknown check id {0:?}: see `intercom-sspm checks` or the Checks page")]
    Check(String),
    #[error("{0}")]
    Digest(String),
    #[error(
        "PagerDuty incidents follow findings; send digests to a webhook, Slack or email channel"
    )]
    DigestOnPagerduty,
    #[error("channel secrets are sealed with the token key (security.token_key), which is not configured: give the URL as a file:/env: reference instead")]
    NoKey,
    #[error("the stored secrets of this channel cannot be opened with the configured token key, so they cannot be changed: {0}")]
    Unopenable(String),
}

impl InputError {
    /// The form field the error is shown next to.
    pub fn field(&self) -> &'static str {
        match self {
            InputError::Name(_) => "name",
            InputError::Format(_) => "format",
            InputError::NotForKind(f, _) => f,
            InputError::Url(_) | InputError::UrlMissing(_) | InputError::UrlTwice => "url",
            InputError::UrlRef(_) => "url_ref",
            InputError::From(_) => "email_from",
            InputError::ToMissing | InputError::To(_) => "email_to",
            InputError::RoutingKeyMissing => "routing_key",
            InputError::Severity(_) => "min_severity",
            InputError::Events(_) => "on",
            InputError::Check(_) => "checks",
            InputError::Digest(_) | InputError::DigestOnPagerduty => "digest",
            InputError::NoKey | InputError::Unopenable(_) => "url",
        }
    }
}

/// Rule fields as given; `None` = not given (the default on add, unchanged on a change).
#[derive(Debug, Default, Clone)]
pub struct RuleFields {
    pub min_severity: Option<String>,
    /// `opened,reopened,...`
    pub on: Option<String>,
    pub checks: Option<Vec<String>>,
    pub exclude_checks: Option<Vec<String>>,
    pub instances: Option<Vec<String>>,
    /// A cron, or `off` / empty for none.
    pub digest: Option<String>,
}

/// Target and secret fields as given; `None` = not given (on a change: keep it).
#[derive(Default)]
pub struct TargetFields {
    pub format: Option<String>,
    /// Webhook or Slack URL, PagerDuty base URL, or the SMTP URL of an email channel.
    pub url: Option<SecretString>,
    pub url_ref: Option<String>,
    pub email_from: Option<String>,
    pub email_to: Option<Vec<String>>,
    pub routing_key: Option<SecretString>,
    /// Webhook: a fresh signing secret (always made on add).
    pub rotate_secret: bool,
}

fn clean(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A comma-separated field as the list the other fields take.
pub fn split_list(raw: &str) -> Vec<String> {
    clean(&raw.split(',').map(str::to_string).collect::<Vec<_>>())
}

fn non_empty(s: &Option<SecretString>) -> Option<&SecretString> {
    s.as_ref().filter(|s| !s.expose_secret().trim().is_empty())
}

pub fn parse_format(raw: &str) -> Result<WebhookFormat, InputError> {
    WebhookFormat::parse(raw.trim()).ok_or_else(|| InputError::Format(raw.to_string()))
}

pub fn parse_url_ref(raw: &str) -> Result<String, InputError> {
    raw.trim()
        .parse::<TokenRef>()
        .map(|r| r.to_string())
        .map_err(|_| InputError::UrlRef(raw.to_string()))
}

/// The URL for a channel of `kind`: SMTP for email, HTTP(S) otherwise.
pub fn check_url(kind: ChannelKind, url: &SecretString) -> Result<(), InputError> {
    let u = url.expose_secret().trim();
    let checked = match kind {
        ChannelKind::Email => send::validate_smtp_url(u),
        _ => send::validate_http_url(u, "the URL"),
    };
    checked.map_err(InputError::Url)
}

pub fn check_from(from: &str) -> Result<(), InputError> {
    match from.trim().parse::<lettre::message::Mailbox>() {
        Ok(_) => Ok(()),
        Err(_) => Err(InputError::From(from.to_string())),
    }
}

pub fn check_to(to: &[String]) -> Result<(), InputError> {
    if to.is_empty() {
        return Err(InputError::ToMissing);
    }
    for t in to {
        if t.parse::<lettre::message::Mailbox>().is_err() {
            return Err(InputError::To(t.clone()));
        }
    }
    Ok(())
}

/// Applies the given rule fields onto `rules`, collecting every wrong field.
pub fn apply_rules(
    rules: &mut Rules,
    f: &RuleFields,
    kind: ChannelKind,
    errors: &mut Vec<InputError>,
) {
    if let Some(s) = &f.min_severity {
        match rules::parse_severity(s) {
            Ok(v) => rules.min_severity = v,
            Err(e) => errors.push(InputError::Severity(e)),
        }
    }
    if let Some(on) = &f.on {
        match rules::parse_events(on) {
            Ok(v) => rules.events = v,
            Err(e) => errors.push(InputError::Events(e)),
        }
    }
    if let Some(c) = &f.checks {
        let ids = clean(c);
        match ids.iter().find(|id| crate::checks::meta(id).is_none()) {
            Some(bad) => errors.push(InputError::Check(bad.clone())),
            None => rules.checks = ids,
        }
    }
    if let Some(c) = &f.exclude_checks {
        rules.exclude_checks = clean(c);
    }
    if let Some(i) = &f.instances {
        rules.instances = clean(i);
    }
    if let Some(d) = &f.digest {
        let d = d.trim();
        if d.is_empty() || d == "off" {
            rules.digest = None;
        } else if kind == ChannelKind::Pagerduty {
            errors.push(InputError::DigestOnPagerduty);
        } else {
            match digest::parse(d) {
                Ok(_) => rules.digest = Some(d.to_string()),
                Err(e) => errors.push(InputError::Digest(e)),
            }
        }
    }
}

/// Fields that belong to one kind only, given for another.
fn kind_mismatches(kind: ChannelKind, t: &TargetFields, errors: &mut Vec<InputError>) {
    if t.format.is_some() && kind != ChannelKind::Webhook {
        errors.push(InputError::NotForKind("format", "webhook"));
    }
    if (t.email_from.is_some() || t.email_to.is_some()) && kind != ChannelKind::Email {
        errors.push(InputError::NotForKind("email_from", "email"));
    }
    if non_empty(&t.routing_key).is_some() && kind != ChannelKind::Pagerduty {
        errors.push(InputError::NotForKind("routing_key", "PagerDuty"));
    }
    if t.rotate_secret && kind != ChannelKind::Webhook {
        errors.push(InputError::NotForKind("rotate_secret", "webhook"));
    }
}

/// The new URL or reference, checked (at most one of them).
fn target(
    kind: ChannelKind,
    t: &TargetFields,
    errors: &mut Vec<InputError>,
) -> (Option<SecretString>, Option<String>) {
    let url = non_empty(&t.url).map(|u| SecretString::from(u.expose_secret().trim().to_string()));
    let url_ref = t.url_ref.as_deref().filter(|r| !r.trim().is_empty());
    if url.is_some() && url_ref.is_some() {
        errors.push(InputError::UrlTwice);
        return (None, None);
    }
    if let Some(u) = &url {
        if let Err(e) = check_url(kind, u) {
            errors.push(e);
        }
    }
    let url_ref = match url_ref.map(parse_url_ref) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            errors.push(e);
            None
        }
        None => None,
    };
    (url, url_ref)
}

/// A validated, sealed new channel, ready for [`super::channels::insert`].
#[derive(Debug)]
pub struct ValidNew {
    pub id: Uuid,
    pub name: String,
    pub kind: ChannelKind,
    pub format: Option<WebhookFormat>,
    pub email_from: Option<String>,
    pub email_to: Vec<String>,
    pub sealed: Option<Sealed>,
    pub url_ref: Option<String>,
    pub rules: Rules,
    /// Webhook: the signing secret, to show once.
    pub signing_secret: Option<SecretString>,
}

impl ValidNew {
    pub fn as_new(&self) -> NewChannel<'_> {
        NewChannel {
            id: self.id,
            name: &self.name,
            kind: self.kind,
            format: self.format,
            email_from: self.email_from.as_deref(),
            email_to: &self.email_to,
            sealed: self.sealed.as_ref(),
            url_ref: self.url_ref.as_deref(),
            rules: &self.rules,
        }
    }
}

/// `channel add` and the console's new-channel form: every wrong field, or the channel.
pub fn validate_new(
    name: &str,
    kind: ChannelKind,
    t: &TargetFields,
    r: &RuleFields,
    keyring: Option<&Keyring>,
) -> Result<ValidNew, Vec<InputError>> {
    let mut errors = Vec::new();
    let name = name.trim();
    if let Err(e @ ChannelError::BadName(_)) = super::channels::validate_name(name) {
        errors.push(InputError::Name(e.to_string()));
    }
    let mut rules = Rules::default();
    apply_rules(&mut rules, r, kind, &mut errors);
    kind_mismatches(kind, t, &mut errors);
    let format = match t.format.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(f) => parse_format(f).map_err(|e| errors.push(e)).ok(),
        None => None,
    };
    let (url, url_ref) = target(kind, t, &mut errors);
    if url.is_none()
        && url_ref.is_none()
        && kind != ChannelKind::Pagerduty
        && !errors
            .iter()
            .any(|e| e.field() == "url" || e.field() == "url_ref")
    {
        errors.push(InputError::UrlMissing(kind));
    }
    let email_to = t.email_to.as_deref().map(clean).unwrap_or_default();
    let email_from = t.email_from.as_deref().map(str::trim).map(str::to_string);
    if kind == ChannelKind::Email {
        if let Err(e) = check_from(email_from.as_deref().unwrap_or("")) {
            errors.push(e);
        }
        if let Err(e) = check_to(&email_to) {
            errors.push(e);
        }
    }
    let routing_key =
        non_empty(&t.routing_key).map(|k| SecretString::from(k.expose_secret().trim().to_string()));
    if kind == ChannelKind::Pagerduty && routing_key.is_none() {
        errors.push(InputError::RoutingKeyMissing);
    }
    let signing_secret = (kind == ChannelKind::Webhook).then(generate_signing_secret);
    let secrets = Secrets {
        url,
        signing_secret: signing_secret.clone(),
        routing_key,
    };
    if !secrets.is_empty() && keyring.is_none() {
        errors.push(InputError::NoKey);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let id = Uuid::new_v4();
    let sealed = keyring
        .filter(|_| !secrets.is_empty())
        .map(|ring| secrets.seal(ring, id));
    Ok(ValidNew {
        id,
        name: name.to_string(),
        kind,
        format: (kind == ChannelKind::Webhook).then(|| format.unwrap_or(WebhookFormat::Json)),
        email_from: email_from.filter(|_| kind == ChannelKind::Email),
        email_to,
        sealed,
        url_ref,
        rules,
        signing_secret,
    })
}

/// What a change did, for the audit row and the answer (field names, never values).
#[derive(Debug, Default)]
pub struct Changed {
    pub fields: Vec<&'static str>,
    /// A rotated webhook signing secret, to show once.
    pub signing_secret: Option<SecretString>,
}

/// `channel set` and the console's edit form: applies the given fields onto `c`
/// (secrets re-sealed when one of them changes; the others are kept as stored).
pub fn apply_change(
    c: &mut Channel,
    t: &TargetFields,
    r: &RuleFields,
    keyring: Option<&Keyring>,
) -> Result<Changed, Vec<InputError>> {
    let mut errors = Vec::new();
    let before = c.clone();
    apply_rules(&mut c.rules, r, c.kind, &mut errors);
    kind_mismatches(c.kind, t, &mut errors);
    if c.kind == ChannelKind::Webhook {
        if let Some(f) = t.format.as_deref().filter(|f| !f.trim().is_empty()) {
            match parse_format(f) {
                Ok(f) => c.format = Some(f),
                Err(e) => errors.push(e),
            }
        }
    }
    if c.kind == ChannelKind::Email {
        if let Some(from) = &t.email_from {
            match check_from(from) {
                Ok(()) => c.email_from = Some(from.trim().to_string()),
                Err(e) => errors.push(e),
            }
        }
        if let Some(to) = &t.email_to {
            let to = clean(to);
            match check_to(&to) {
                Ok(()) => c.email_to = to,
                Err(e) => errors.push(e),
            }
        }
    }
    let (url, url_ref) = target(c.kind, t, &mut errors);
    let routing_key = non_empty(&t.routing_key)
        .filter(|_| c.kind == ChannelKind::Pagerduty)
        .map(|k| SecretString::from(k.expose_secret().trim().to_string()));
    let rotate = t.rotate_secret && c.kind == ChannelKind::Webhook;
    let mut changed = Changed::default();
    let secrets_change = url.is_some() || url_ref.is_some() || routing_key.is_some() || rotate;
    if secrets_change && errors.is_empty() {
        let mut secrets = match (&c.sealed, keyring) {
            (Some(sealed), Some(ring)) => match Secrets::open(ring, sealed, c.id) {
                Ok(s) => s,
                Err(e) => return Err(vec![InputError::Unopenable(e.to_string())]),
            },
            (Some(_), None) => return Err(vec![InputError::NoKey]),
            (None, _) => Secrets::default(),
        };
        if let Some(u) = url {
            secrets.url = Some(u);
            c.url_ref = None;
            changed.fields.push("url");
        }
        if let Some(r) = url_ref {
            secrets.url = None;
            c.url_ref = Some(r);
            changed.fields.push("url_ref");
        }
        if let Some(k) = routing_key {
            secrets.routing_key = Some(k);
            changed.fields.push("routing_key");
        }
        if rotate {
            let s = generate_signing_secret();
            secrets.signing_secret = Some(s.clone());
            changed.signing_secret = Some(s);
            changed.fields.push("signing_secret");
        }
        c.sealed = if secrets.is_empty() {
            None
        } else {
            match keyring {
                Some(ring) => Some(secrets.seal(ring, c.id)),
                None => return Err(vec![InputError::NoKey]),
            }
        };
    }
    if !errors.is_empty() {
        *c = before;
        return Err(errors);
    }
    let b = &before;
    for (field, differs) in [
        ("format", b.format != c.format),
        ("email_from", b.email_from != c.email_from),
        ("email_to", b.email_to != c.email_to),
        ("min_severity", b.rules.min_severity != c.rules.min_severity),
        ("on", b.rules.events != c.rules.events),
        ("checks", b.rules.checks != c.rules.checks),
        (
            "exclude_checks",
            b.rules.exclude_checks != c.rules.exclude_checks,
        ),
        ("instances", b.rules.instances != c.rules.instances),
        ("digest", b.rules.digest != c.rules.digest),
    ] {
        if differs {
            changed.fields.push(field);
        }
    }
    Ok(changed)
}

/// The non-secret settings of a channel for an audit row: names and rules, and where the
/// URL lives (`sealed` or the reference), never a secret.
pub fn audit_details(c: &Channel) -> serde_json::Value {
    serde_json::json!({
        "channel_id": c.id,
        "kind": c.kind.as_str(),
        "enabled": c.enabled,
        "url": c.url_source(),
        "min_severity": c.rules.min_severity.as_str(),
        "on": c.rules.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
    })
}

/// The audit row of a test message: which message, and whether it was accepted.
pub fn test_details(c: &Channel, message_id: Uuid, outcome: &send::Outcome) -> serde_json::Value {
    serde_json::json!({
        "channel_id": c.id,
        "message_id": message_id,
        "accepted": matches!(outcome, send::Outcome::Delivered { .. }),
        "code": outcome.code(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TokenKey;

    fn ring() -> Keyring {
        Keyring::new(TokenKey::generate(), vec![])
    }

    fn fields(url: &str) -> TargetFields {
        TargetFields {
            url: Some(SecretString::from(url.to_string())),
            ..Default::default()
        }
    }

    fn fields_of(errs: &[InputError]) -> Vec<&'static str> {
        errs.iter().map(InputError::field).collect()
    }

    #[test]
    fn a_webhook_gets_a_signing_secret_and_its_url_sealed() {
        let ring = ring();
        let v = validate_new(
            "siem",
            ChannelKind::Webhook,
            &fields("https://siem.example/hook?token=s3cr3t"),
            &RuleFields::default(),
            Some(&ring),
        )
        .unwrap();
        assert_eq!(v.format, Some(WebhookFormat::Json));
        let open = Secrets::open(&ring, v.sealed.as_ref().unwrap(), v.id).unwrap();
        assert!(open.url.unwrap().expose_secret().contains("s3cr3t"));
        assert!(v.signing_secret.is_some());
    }

    #[test]
    fn every_wrong_field_is_named_and_no_message_repeats_the_url() {
        let t = TargetFields {
            url: Some(SecretString::from("ftp://user:hunter2@x".to_string())),
            email_from: Some("not an address".into()),
            ..Default::default()
        };
        let r = RuleFields {
            min_severity: Some("urgent".into()),
            checks: Some(vec!["no_such_check".into()]),
            digest: Some("6h".into()),
            ..Default::default()
        };
        let errs = validate_new("bad name", ChannelKind::Slack, &t, &r, Some(&ring())).unwrap_err();
        let f = fields_of(&errs);
        for want in [
            "name",
            "min_severity",
            "checks",
            "digest",
            "email_from",
            "url",
        ] {
            assert!(f.contains(&want), "{want} in {f:?}");
        }
        assert!(errs.iter().all(|e| !e.to_string().contains("hunter2")));
    }

    #[test]
    fn kinds_need_their_own_fields() {
        let none = TargetFields::default();
        let r = RuleFields::default();
        let e = validate_new(
            "m",
            ChannelKind::Email,
            &fields("smtp://127.0.0.1:25?tls=none"),
            &r,
            Some(&ring()),
        )
        .unwrap_err();
        assert_eq!(fields_of(&e), vec!["email_from", "email_to"]);
        let e = validate_new("p", ChannelKind::Pagerduty, &none, &r, Some(&ring())).unwrap_err();
        assert_eq!(fields_of(&e), vec!["routing_key"]);
        let e = validate_new("s", ChannelKind::Slack, &none, &r, None).unwrap_err();
        assert_eq!(fields_of(&e), vec!["url"]);
        // A reference needs no key; a URL to seal does.
        let by_ref = TargetFields {
            url_ref: Some("env:SLACK_URL".into()),
            ..Default::default()
        };
        assert!(validate_new("s", ChannelKind::Slack, &by_ref, &r, None).is_ok());
        let e = validate_new(
            "s",
            ChannelKind::Slack,
            &fields("https://hooks.example/x"),
            &r,
            None,
        )
        .unwrap_err();
        assert_eq!(e, vec![InputError::NoKey]);
        let pd_digest = RuleFields {
            digest: Some("0 8 * * *".into()),
            ..Default::default()
        };
        let pd = TargetFields {
            routing_key: Some(SecretString::from("R0UT1NG".to_string())),
            ..Default::default()
        };
        let e =
            validate_new("p", ChannelKind::Pagerduty, &pd, &pd_digest, Some(&ring())).unwrap_err();
        assert_eq!(e, vec![InputError::DigestOnPagerduty]);
    }

    #[test]
    fn a_change_keeps_secrets_not_given_and_reports_field_names_only() {
        let ring = ring();
        let v = validate_new(
            "siem",
            ChannelKind::Webhook,
            &fields("https://siem.example/a"),
            &RuleFields::default(),
            Some(&ring),
        )
        .unwrap();
        let mut c = Channel {
            id: v.id,
            name: v.name.clone(),
            kind: v.kind,
            enabled: true,
            format: v.format,
            email_from: None,
            email_to: vec![],
            sealed: v.sealed.clone(),
            url_ref: None,
            rules: v.rules.clone(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        let r = RuleFields {
            min_severity: Some("medium".into()),
            ..Default::default()
        };
        let done = apply_change(&mut c, &TargetFields::default(), &r, Some(&ring)).unwrap();
        assert_eq!(done.fields, vec!["min_severity"]);
        let kept = Secrets::open(&ring, c.sealed.as_ref().unwrap(), c.id).unwrap();
        assert_eq!(kept.url.unwrap().expose_secret(), "https://siem.example/a");
        assert_eq!(
            kept.signing_secret.unwrap().expose_secret(),
            v.signing_secret.as_ref().unwrap().expose_secret()
        );
        // A bad field changes nothing at all.
        let bad = RuleFields {
            min_severity: Some("low".into()),
            on: Some("sometimes".into()),
            ..Default::default()
        };
        let e =
            apply_change(&mut c, &fields("https://siem.example/b"), &bad, Some(&ring)).unwrap_err();
        assert_eq!(fields_of(&e), vec!["on"]);
        assert_eq!(c.rules.min_severity.as_str(), "medium");
        let still = Secrets::open(&ring, c.sealed.as_ref().unwrap(), c.id).unwrap();
        assert_eq!(still.url.unwrap().expose_secret(), "https://siem.example/a");
    }
}

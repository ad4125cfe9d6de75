//! Notification channels: what they are, where their secrets live, and their SQL.
//!
//! Every secret of a channel (the webhook or Slack URL with its token, the Standard
//! Webhooks signing secret, the SMTP URL with its password, the PagerDuty routing key) is
//! kept in ONE JSON document sealed under the token key with the channel id as associated
//! data, or the URL is given as a `file:`/`env:` reference resolved at send time. Nothing
//! secret is ever a plain column, so `sspm_reader` grants stay simple.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::rules::{Event, Rules};
use crate::checks::Severity;
use crate::crypto::{CryptoError, Keyring, Sealed};
use crate::token::{TokenError, TokenRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Webhook,
    Slack,
    Email,
    Pagerduty,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
            ChannelKind::Pagerduty => "pagerduty",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(ChannelKind::Webhook),
            "slack" => Some(ChannelKind::Slack),
            "email" => Some(ChannelKind::Email),
            "pagerduty" => Some(ChannelKind::Pagerduty),
            _ => None,
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    Json,
    Ocsf,
    Cloudevents,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Ocsf => "ocsf",
            WebhookFormat::Cloudevents => "cloudevents",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(WebhookFormat::Json),
            "ocsf" => Some(WebhookFormat::Ocsf),
            "cloudevents" => Some(WebhookFormat::Cloudevents),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("no channel named {0:?}: see `intercom-sspm channel list`")]
    NotFound(String),
    #[error("a channel named {0:?} already exists: pick another name or `channel set` it")]
    Duplicate(String),
    #[error("channel name {0:?} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("channel {name:?}: its secrets are sealed under the token key, which is not configured ({source})")]
    Keyring { name: String, source: CryptoError },
    #[error("channel {name:?}: cannot open its sealed secrets: {source}")]
    Open { name: String, source: CryptoError },
    #[error("channel {name:?}: {source}")]
    Reference { name: String, source: TokenError },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The secrets of one channel, in memory only while a message is sent.
#[derive(Default)]
pub struct Secrets {
    /// Webhook or Slack URL, PagerDuty base URL override, or SMTP URL (with credentials).
    pub url: Option<SecretString>,
    /// Standard Webhooks signing secret, `whsec_<base64>`.
    pub signing_secret: Option<SecretString>,
    /// PagerDuty integration (routing) key.
    pub routing_key: Option<SecretString>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("url", &self.url.as_ref().map(|_| "[REDACTED]"))
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// The sealed document's shape; never logged, zeroized after use.
#[derive(Serialize, Deserialize, Default)]
struct SecretDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routing_key: Option<String>,
}

impl Secrets {
    pub fn is_empty(&self) -> bool {
        self.url.is_none() && self.signing_secret.is_none() && self.routing_key.is_none()
    }

    pub fn seal(&self, keyring: &Keyring, channel_id: Uuid) -> Sealed {
        let doc = SecretDoc {
            url: self.url.as_ref().map(|s| s.expose_secret().to_string()),
            signing_secret: self
                .signing_secret
                .as_ref()
                .map(|s| s.expose_secret().to_string()),
            routing_key: self
                .routing_key
                .as_ref()
                .map(|s| s.expose_secret().to_string()),
        };
        let text = Zeroizing::new(serde_json::to_string(&doc).unwrap_or_default());
        let mut doc = doc;
        zeroize_doc(&mut doc);
        keyring.seal(&SecretString::from(text.as_str()), channel_id.as_bytes())
    }

    pub fn open(keyring: &Keyring, sealed: &Sealed, channel_id: Uuid) -> Result<Self, CryptoError> {
        let text = keyring.open(sealed, channel_id.as_bytes())?;
        let mut doc: SecretDoc =
            serde_json::from_str(text.expose_secret()).map_err(|_| CryptoError::Tampered)?;
        let out = Secrets {
            url: doc.url.clone().map(SecretString::from),
            signing_secret: doc.signing_secret.clone().map(SecretString::from),
            routing_key: doc.routing_key.clone().map(SecretString::from),
        };
        zeroize_doc(&mut doc);
        Ok(out)
    }
}

fn zeroize_doc(doc: &mut SecretDoc) {
    use zeroize::Zeroize;
    for s in [&mut doc.url, &mut doc.signing_secret, &mut doc.routing_key]
        .into_iter()
        .flatten()
    {
        s.zeroize();
    }
}

/// A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_signing_secret() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    SecretString::from(format!("whsec_{}", B64.encode(bytes.as_ref())))
}

/// A channel as stored (secrets still sealed).
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: Uuid,
    pub name: String,
    pub kind: ChannelKind,
    pub enabled: bool,
    pub format: Option<WebhookFormat>,
    pub email_from: Option<String>,
    pub email_to: Vec<String>,
    pub sealed: Option<Sealed>,
    pub url_ref: Option<String>,
    pub rules: Rules,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Channel {
    /// Opens the sealed secrets and resolves the URL reference, for one send.
    pub fn secrets(&self, keyring: Option<&Keyring>) -> Result<Secrets, ChannelError> {
        let mut secrets = match &self.sealed {
            Some(sealed) => {
                let ring = keyring.ok_or_else(|| ChannelError::Keyring {
                    name: self.name.clone(),
                    source: CryptoError::MissingKey,
                })?;
                Secrets::open(ring, sealed, self.id).map_err(|source| ChannelError::Open {
                    name: self.name.clone(),
                    source,
                })?
            }
            None => Secrets::default(),
        };
        if let Some(r) = &self.url_ref {
            let reference: TokenRef = r.parse().map_err(|source| ChannelError::Reference {
                name: self.name.clone(),
                source,
            })?;
            secrets.url = Some(
                reference
                    .resolve()
                    .map_err(|source| ChannelError::Reference {
                        name: self.name.clone(),
                        source,
                    })?,
            );
        }
        Ok(secrets)
    }

    /// Where the URL comes from, for listings: never the URL itself.
    pub fn url_source(&self) -> String {
        match &self.url_ref {
            Some(r) => r.clone(),
            None if self.sealed.is_some() => "sealed".into(),
            None => "-".into(),
        }
    }
}

/// What `channel show` and `list --format json` print: no secret, only where it lives.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    pub id: Uuid,
    pub name: String,
    pub kind: &'static str,
    pub enabled: bool,
    pub format: Option<&'static str>,
    pub email_from: Option<String>,
    pub email_to: Vec<String>,
    /// `sealed (key id ...)`, or the reference (`env:VAR`, `file:/path`).
    pub url: String,
    pub secrets: String,
    pub min_severity: &'static str,
    pub on: Vec<&'static str>,
    pub checks: Vec<String>,
    pub exclude_checks: Vec<String>,
    pub instances: Vec<String>,
    pub digest: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Channel> for ChannelView {
    fn from(c: &Channel) -> Self {
        ChannelView {
            id: c.id,
            name: c.name.clone(),
            kind: c.kind.as_str(),
            enabled: c.enabled,
            format: c.format.map(WebhookFormat::as_str),
            email_from: c.email_from.clone(),
            email_to: c.email_to.clone(),
            url: c.url_source(),
            secrets: match &c.sealed {
                Some(s) => format!("sealed (key id {}) ********", s.key_id),
                None => "-".into(),
            },
            min_severity: c.rules.min_severity.as_str(),
            on: c.rules.events.iter().map(|e| e.as_str()).collect(),
            checks: c.rules.checks.clone(),
            exclude_checks: c.rules.exclude_checks.clone(),
            instances: c.rules.instances.clone(),
            digest: c.rules.digest.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

pub fn validate_name(name: &str) -> Result<(), ChannelError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ChannelError::BadName(name.to_string()))
    }
}

struct Row {
    id: Uuid,
    name: String,
    kind: String,
    enabled: bool,
    format: Option<String>,
    email_from: Option<String>,
    email_to: Vec<String>,
    secret_ciphertext: Option<Vec<u8>>,
    secret_nonce: Option<Vec<u8>>,
    secret_key_id: Option<String>,
    url_ref: Option<String>,
    min_severity: String,
    events: Vec<String>,
    checks: Vec<String>,
    exclude_checks: Vec<String>,
    instances: Vec<String>,
    digest: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_channel(self) -> Channel {
        let sealed = match (
            self.secret_ciphertext,
            self.secret_nonce,
            self.secret_key_id,
        ) {
            (Some(ciphertext), Some(nonce), Some(key_id)) => Some(Sealed {
                key_id,
                nonce,
                ciphertext,
            }),
            _ => None,
        };
        Channel {
            id: self.id,
            name: self.name,
            // The CHECK constraints keep these parseable; fall back rather than panic.
            kind: ChannelKind::parse(&self.kind).unwrap_or(ChannelKind::Webhook),
            enabled: self.enabled,
            format: self.format.as_deref().and_then(WebhookFormat::parse),
            email_from: self.email_from,
            email_to: self.email_to,
            sealed,
            url_ref: self.url_ref,
            rules: Rules {
                min_severity: Severity::from_str(&self.min_severity).unwrap_or(Severity::High),
                events: self.events.iter().filter_map(|e| Event::parse(e)).collect(),
                checks: self.checks,
                exclude_checks: self.exclude_checks,
                instances: self.instances,
                digest: self.digest,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Everything `channel add` stores.
pub struct NewChannel<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub kind: ChannelKind,
    pub format: Option<WebhookFormat>,
    pub email_from: Option<&'a str>,
    pub email_to: &'a [String],
    pub sealed: Option<&'a Sealed>,
    pub url_ref: Option<&'a str>,
    pub rules: &'a Rules,
}

fn events_text(rules: &Rules) -> Vec<String> {
    rules
        .events
        .iter()
        .map(|e| e.as_str().to_string())
        .collect()
}

/// On the caller's connection or transaction, so the audit row of the change commits with it.
pub async fn insert(conn: &mut PgConnection, c: &NewChannel<'_>) -> Result<(), ChannelError> {
    let events = events_text(c.rules);
    let res = sqlx::query!(
        r#"INSERT INTO sspm.notification_channels
             (id, name, kind, format, email_from, email_to, secret_ciphertext, secret_nonce,
              secret_key_id, url_ref, min_severity, events, checks, exclude_checks, instances, digest)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"#,
        c.id,
        c.name,
        c.kind.as_str(),
        c.format.map(WebhookFormat::as_str),
        c.email_from,
        c.email_to,
        c.sealed.map(|s| s.ciphertext.clone()),
        c.sealed.map(|s| s.nonce.clone()),
        c.sealed.map(|s| s.key_id.clone()),
        c.url_ref,
        c.rules.min_severity.as_str(),
        &events,
        &c.rules.checks,
        &c.rules.exclude_checks,
        &c.rules.instances,
        c.rules.digest.as_deref(),
    )
    .execute(conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(ChannelError::Duplicate(c.name.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Updates the non-secret settings and rules of a channel (secrets via `reseal`).
pub async fn update(conn: &mut PgConnection, c: &Channel) -> Result<(), ChannelError> {
    let events = events_text(&c.rules);
    sqlx::query!(
        r#"UPDATE sspm.notification_channels
           SET enabled = $2, format = $3, email_from = $4, email_to = $5, url_ref = $6,
               min_severity = $7, events = $8, checks = $9, exclude_checks = $10,
               instances = $11, digest = $12,
               secret_ciphertext = $13, secret_nonce = $14, secret_key_id = $15,
               updated_at = now()
           WHERE id = $1"#,
        c.id,
        c.enabled,
        c.format.map(WebhookFormat::as_str),
        c.email_from.as_deref(),
        &c.email_to,
        c.url_ref.as_deref(),
        c.rules.min_severity.as_str(),
        &events,
        &c.rules.checks,
        &c.rules.exclude_checks,
        &c.rules.instances,
        c.rules.digest.as_deref(),
        c.sealed.as_ref().map(|s| s.ciphertext.clone()),
        c.sealed.as_ref().map(|s| s.nonce.clone()),
        c.sealed.as_ref().map(|s| s.key_id.clone()),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Enables or disables a channel on the caller's transaction; returns it as it now is.
pub async fn set_enabled(
    conn: &mut PgConnection,
    name_or_id: &str,
    enabled: bool,
) -> Result<Channel, ChannelError> {
    let mut c = get(&mut *conn, name_or_id).await?;
    c.enabled = enabled;
    update(conn, &c).await?;
    Ok(c)
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<Channel>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id, name, kind, enabled, format, email_from, email_to, secret_ciphertext,
                  secret_nonce, secret_key_id, url_ref, min_severity, events, checks,
                  exclude_checks, instances, digest, created_at, updated_at
           FROM sspm.notification_channels ORDER BY lower(name)"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Row::into_channel).collect())
}

pub async fn list_enabled(conn: &mut PgConnection) -> Result<Vec<Channel>, sqlx::Error> {
    Ok(list(conn)
        .await?
        .into_iter()
        .filter(|c| c.enabled)
        .collect())
}

pub async fn get_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Channel>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"SELECT id, name, kind, enabled, format, email_from, email_to, secret_ciphertext,
                  secret_nonce, secret_key_id, url_ref, min_severity, events, checks,
                  exclude_checks, instances, digest, created_at, updated_at
           FROM sspm.notification_channels WHERE id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Row::into_channel))
}

/// By name (case-insensitive) or id.
pub async fn get(executor: impl PgExecutor<'_>, name_or_id: &str) -> Result<Channel, ChannelError> {
    let id = Uuid::parse_str(name_or_id).ok();
    let row = sqlx::query_as!(
        Row,
        r#"SELECT id, name, kind, enabled, format, email_from, email_to, secret_ciphertext,
                  secret_nonce, secret_key_id, url_ref, min_severity, events, checks,
                  exclude_checks, instances, digest, created_at, updated_at
           FROM sspm.notification_channels WHERE lower(name) = lower($1) OR id = $2"#,
        name_or_id,
        id
    )
    .fetch_optional(executor)
    .await?;
    row.map(Row::into_channel)
        .ok_or_else(|| ChannelError::NotFound(name_or_id.to_string()))
}

pub async fn remove(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("DELETE FROM sspm.notification_channels WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Key rotation: every sealed channel, locked until the caller's transaction ends.
pub async fn lock_sealed(
    conn: &mut PgConnection,
) -> Result<Vec<(Uuid, String, Sealed)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, name, secret_ciphertext AS "ciphertext!", secret_nonce AS "nonce!",
                  secret_key_id AS "key_id!"
           FROM sspm.notification_channels
           WHERE secret_ciphertext IS NOT NULL
           ORDER BY lower(name), id
           FOR UPDATE"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                r.name,
                Sealed {
                    key_id: r.key_id,
                    nonce: r.nonce,
                    ciphertext: r.ciphertext,
                },
            )
        })
        .collect())
}

pub async fn reseal(
    conn: &mut PgConnection,
    id: Uuid,
    sealed: &Sealed,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE sspm.notification_channels
         SET secret_ciphertext = $2, secret_nonce = $3, secret_key_id = $4
         WHERE id = $1",
        id,
        sealed.ciphertext,
        sealed.nonce,
        sealed.key_id,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Key ids referenced by sealed channel secrets.
pub async fn key_ids_in_use(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT secret_key_id AS "key_id!" FROM sspm.notification_channels
           WHERE secret_key_id IS NOT NULL ORDER BY 1"#
    )
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TokenKey;

    #[test]
    fn secrets_round_trip_bound_to_the_channel() {
        let ring = Keyring::new(TokenKey::generate(), vec![]);
        let id = Uuid::new_v4();
        let s = Secrets {
            url: Some(SecretString::from("https://hooks.example/T0/B0/xyz")),
            signing_secret: Some(generate_signing_secret()),
            routing_key: None,
        };
        let sealed = s.seal(&ring, id);
        assert!(!sealed.ciphertext.windows(5).any(|w| w == b"hooks"));
        let back = Secrets::open(&ring, &sealed, id).unwrap();
        assert_eq!(
            back.url.unwrap().expose_secret(),
            "https://hooks.example/T0/B0/xyz"
        );
        assert!(back
            .signing_secret
            .unwrap()
            .expose_secret()
            .starts_with("whsec_"));
        assert!(Secrets::open(&ring, &sealed, Uuid::new_v4()).is_err());
        assert!(!format!("{s:?}").contains("hooks"));
    }

    #[test]
    fn signing_secrets_are_fresh_and_well_formed() {
        let a = generate_signing_secret();
        let b = generate_signing_secret();
        assert_ne!(a.expose_secret(), b.expose_secret());
        let raw = B64
            .decode(a.expose_secret().strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("ops-slack_1.x").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("").is_err());
    }
}

//! Sending one message to one channel: HTTP (webhook, Slack, PagerDuty) with connect and
//! request timeouts, no redirects and a capped response, or SMTP through `lettre`.
//!
//! The outcome says what the worker does next: delivered; retry (5xx, 408, 429 with its
//! `Retry-After`, timeouts, connection errors); or permanent failure (any other 4xx, a
//! redirect, a channel that cannot work as configured). Error texts never contain the
//! URL, its token, a secret or the receiver's body.

use std::time::Duration;

use chrono::Utc;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

use super::channels::{Channel, ChannelError, ChannelKind, Secrets, WebhookFormat};
use super::render::{self, AlertEvent};
use super::sign;
use crate::config::NotifySettings;
use crate::crypto::Keyring;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        code: Option<u16>,
    },
    Retry {
        code: Option<u16>,
        /// The receiver's `Retry-After`, when it sent one.
        after: Option<Duration>,
        error: String,
    },
    Permanent {
        code: Option<u16>,
        error: String,
    },
}

impl Outcome {
    pub fn code(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { code }
            | Outcome::Retry { code, .. }
            | Outcome::Permanent { code, .. } => *code,
        }
    }

    /// The outcome in plain words, for `channel test` and the console (no secret: the
    /// error texts never carry one).
    pub fn describe(&self) -> String {
        let code = |c: &Option<u16>| c.map(|c| format!(" (code {c})")).unwrap_or_default();
        match self {
            Outcome::Delivered { code: c } => {
                format!("the receiver accepted the test message{}", code(c))
            }
            Outcome::Retry { error, .. } => format!(
                "the test message was not accepted: {error}; the receiver may be down or busy, try again later"
            ),
            Outcome::Permanent { error, .. } => {
                format!("the test message was not accepted: {error}")
            }
        }
    }

    fn permanent(error: impl Into<String>) -> Self {
        Outcome::Permanent {
            code: None,
            error: error.into(),
        }
    }
}

/// The classification of an HTTP status, pure.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    let code = Some(status);
    match status {
        200..=299 => Outcome::Delivered { code },
        408 | 429 | 500..=599 => Outcome::Retry {
            code,
            after: retry_after,
            error: format!("receiver answered HTTP {status}"),
        },
        300..=399 => Outcome::Permanent {
            code,
            error: format!("receiver answered HTTP {status} (a redirect); redirects are not followed: configure the final URL"),
        },
        _ => Outcome::Permanent {
            code,
            error: format!("receiver refused the message with HTTP {status}"),
        },
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    settings: NotifySettings,
    /// `console.public_url` for links in Slack messages; None until the console sets it.
    console_url: Option<String>,
}

impl Sender {
    pub fn new(settings: &NotifySettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(crate::USER_AGENT)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            // A redirect could carry the signed body (or a URL-embedded token) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(settings.concurrency)
            .build()?;
        Ok(Sender {
            http,
            settings: settings.clone(),
            console_url: None,
        })
    }

    pub fn with_console_url(mut self, url: Option<String>) -> Self {
        self.console_url = url;
        self
    }

    /// `channel test` and the console's "Send test": one test event straight to the
    /// channel (not through the outbox, so it works while the channel is disabled and no
    /// worker runs), with a fresh message id.
    pub async fn send_test(
        &self,
        channel: &Channel,
        keyring: Option<&Keyring>,
    ) -> Result<(Uuid, Outcome), ChannelError> {
        let secrets = channel.secrets(keyring)?;
        let event = AlertEvent::new(render::EventKind::Test, Utc::now());
        let id = Uuid::new_v4();
        Ok((id, self.send(channel, &secrets, &event, id).await))
    }

    /// Sends `event` as message `message_id` (the outbox row id) to `channel`.
    pub async fn send(
        &self,
        channel: &Channel,
        secrets: &Secrets,
        event: &AlertEvent,
        message_id: Uuid,
    ) -> Outcome {
        match channel.kind {
            ChannelKind::Webhook => self.webhook(channel, secrets, event, message_id).await,
            ChannelKind::Slack => {
                let Some(url) = &secrets.url else {
                    return Outcome::permanent("the Slack channel has no webhook URL");
                };
                let body = render::slack_body(event, message_id, self.console_url.as_deref());
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                self.post(url, "application/json", bytes, &[]).await
            }
            ChannelKind::Pagerduty => self.pagerduty(secrets, event).await,
            ChannelKind::Email => self.email(channel, secrets, event, message_id).await,
        }
    }

    async fn webhook(
        &self,
        channel: &Channel,
        secrets: &Secrets,
        event: &AlertEvent,
        message_id: Uuid,
    ) -> Outcome {
        let Some(url) = &secrets.url else {
            return Outcome::permanent("the webhook channel has no URL");
        };
        let Some(secret) = &secrets.signing_secret else {
            return Outcome::permanent(
                "the webhook channel has no signing secret: `channel set NAME --rotate-secret`",
            );
        };
        let format = channel.format.unwrap_or(WebhookFormat::Json);
        let (content_type, body) = render::webhook_body(format, event, message_id);
        let id = message_id.to_string();
        let timestamp = Utc::now().timestamp();
        let signature = match sign::signature(secret, &id, timestamp, &body) {
            Ok(s) => s,
            Err(e) => return Outcome::permanent(e.to_string()),
        };
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        self.post(url, content_type, body, &headers).await
    }

    async fn pagerduty(&self, secrets: &Secrets, event: &AlertEvent) -> Outcome {
        let Some(key) = &secrets.routing_key else {
            return Outcome::permanent("the PagerDuty channel has no routing key");
        };
        // A channel URL overrides notify.pagerduty_url (EU service region, a proxy).
        let base = secrets
            .url
            .as_ref()
            .map(|u| u.expose_secret().to_string())
            .unwrap_or_else(|| self.settings.pagerduty_url.clone());
        let endpoint = SecretString::from(format!("{}/v2/enqueue", base.trim_end_matches('/')));
        let mut last = Outcome::Delivered { code: None };
        // One Events API call per finding; the dedup_key makes a re-sent row harmless.
        for ev in render::pagerduty_events(event, key.expose_secret()) {
            let bytes = serde_json::to_vec(&ev).unwrap_or_default();
            last = self.post(&endpoint, "application/json", bytes, &[]).await;
            if !matches!(last, Outcome::Delivered { .. }) {
                return last;
            }
        }
        last
    }

    async fn post(
        &self,
        url: &SecretString,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Outcome {
        let url = match Url::parse(url.expose_secret()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => return Outcome::permanent("the channel URL is not an http(s) URL"),
        };
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            // without_url: the URL may hold the channel's token (Slack, Teams, ...).
            Err(e) => {
                return Outcome::Retry {
                    code: None,
                    after: None,
                    error: transport_error(e),
                }
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // Read (and drop) at most max_response_bytes so the connection can be reused
        // without letting a hostile receiver stream forever.
        let mut read = 0usize;
        while read < self.settings.max_response_bytes {
            match resp.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        classify(status, retry_after)
    }

    async fn email(
        &self,
        channel: &Channel,
        secrets: &Secrets,
        event: &AlertEvent,
        message_id: Uuid,
    ) -> Outcome {
        let Some(url) = &secrets.url else {
            return Outcome::permanent("the email channel has no SMTP URL");
        };
        let transport = match smtp_transport(url, self.settings.request_timeout) {
            Ok(t) => t,
            Err(e) => return Outcome::permanent(e),
        };
        let mail = render::email_body(event, message_id);
        let from: Mailbox = match channel.email_from.as_deref().unwrap_or("").parse() {
            Ok(m) => m,
            Err(_) => return Outcome::permanent("the email channel's --from is not an address"),
        };
        let mut builder = Message::builder()
            .from(from)
            .subject(mail.subject)
            .message_id(Some(format!("<{message_id}@intercom-sspm>")));
        for to in &channel.email_to {
            match to.parse::<Mailbox>() {
                Ok(m) => builder = builder.to(m),
                Err(_) => {
                    return Outcome::permanent(format!("--to address {to:?} is not an address"))
                }
            }
        }
        let message =
            match builder.multipart(MultiPart::alternative_plain_html(mail.text, mail.html)) {
                Ok(m) => m,
                Err(e) => return Outcome::permanent(format!("cannot build the email: {e}")),
            };
        match transport.send(message).await {
            Ok(resp) => Outcome::Delivered {
                code: Some(u16::from(resp.code())),
            },
            Err(e) if e.is_permanent() => Outcome::Permanent {
                code: e.status().map(u16::from),
                error: "the SMTP server refused the message permanently".into(),
            },
            Err(e) => Outcome::Retry {
                code: e.status().map(u16::from),
                after: None,
                error: if e.is_timeout() {
                    "SMTP timed out".into()
                } else if e.is_transient() {
                    "the SMTP server deferred the message".into()
                } else {
                    "SMTP connection or TLS failed".into()
                },
            },
        }
    }
}

/// Describes a reqwest failure without its URL.
fn transport_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", e.without_url())
}

/// `smtp://[user:pass@]host[:port]` = STARTTLS (required), `smtps://` = implicit TLS,
/// `?tls=none` = plaintext (a relay on localhost or in the same pod only).
fn smtp_transport(
    url: &SecretString,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let url =
        Url::parse(url.expose_secret()).map_err(|_| "the SMTP URL is not a URL".to_string())?;
    let host = url
        .host_str()
        .ok_or("the SMTP URL has no host")?
        .to_string();
    let plaintext = url.query_pairs().any(|(k, v)| k == "tls" && v == "none");
    let builder = match (url.scheme(), plaintext) {
        ("smtp", true) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(url.port().unwrap_or(25)),
        ("smtp", false) => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
            .map_err(|_| "cannot set up STARTTLS for the SMTP host".to_string())?
            .port(url.port().unwrap_or(587)),
        ("smtps", _) => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
            .map_err(|_| "cannot set up TLS for the SMTP host".to_string())?
            .port(url.port().unwrap_or(465)),
        _ => return Err("the SMTP URL must start with smtp:// or smtps://".into()),
    };
    let mut builder = builder.timeout(Some(timeout));
    if !url.username().is_empty() {
        let user = percent_decode(url.username());
        let pass = percent_decode(url.password().unwrap_or(""));
        builder = builder.credentials(Credentials::new(user, pass));
    }
    Ok(builder.build())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Checks a `--smtp-url` at `channel add` time (scheme and host only).
pub fn validate_smtp_url(raw: &str) -> Result<(), String> {
    smtp_transport(&SecretString::from(raw.to_string()), Duration::from_secs(1)).map(|_| ())
}

/// Checks an HTTP(S) URL at `channel add` time; the message never repeats the URL.
pub fn validate_http_url(raw: &str, what: &str) -> Result<(), String> {
    match Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(format!(
            "{what} must be an http:// or https:// URL with a host"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        assert_eq!(classify(204, None), Outcome::Delivered { code: Some(204) });
        assert!(matches!(classify(500, None), Outcome::Retry { .. }));
        assert!(matches!(classify(408, None), Outcome::Retry { .. }));
        assert!(matches!(
            classify(429, Some(Duration::from_secs(3))),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(classify(404, None), Outcome::Permanent { .. }));
        assert!(matches!(classify(301, None), Outcome::Permanent { .. }));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn smtp_urls() {
        assert!(validate_smtp_url("smtp://mail.example.com:587").is_ok());
        assert!(validate_smtp_url("smtps://u:p@mail.example.com").is_ok());
        assert!(validate_smtp_url("smtp://127.0.0.1:2525?tls=none").is_ok());
        let e = validate_smtp_url("http://u:hunter2@x").unwrap_err();
        assert!(!e.contains("hunter2"));
        assert_eq!(percent_decode("p%40ss"), "p@ss");
    }
}

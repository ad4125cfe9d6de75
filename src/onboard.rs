//! Onboarding: prove a token works against its region with `GET /me` BEFORE anything is
//! stored, then store the instance with its token sealed. A wrong region is detected by
//! asking the other regions, so the operator is told which one to use.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::checks::domains::{validate_allowed_domains, AllowedDomainError};
use crate::crypto::{CryptoError, Keyring};
use crate::db::instances::{self, Instance, InstanceError, NewInstance};
use crate::intercom::{IntercomClient, IntercomError};
use crate::region::Region;
use crate::schedule::{Schedule, ScheduleError};
use crate::token::{TokenError, TokenRef, TokenSource};

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("invalid instance name {0:?}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit (and not a UUID)")]
    InvalidName(String),
    #[error(transparent)]
    InvalidDomain(#[from] AllowedDomainError),
    #[error("invalid --schedule: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("--timezone needs a cron --schedule (an interval such as 6h has no time of day)")]
    TimezoneWithoutCron,
    #[error("give the time zone either with --timezone or as CRON_TZ=, not both")]
    TimezoneTwice,
    #[error("--timezone applies to cron schedules, not intervals such as {0}: leave the time zone empty")]
    TimezoneOnInterval(String),
    #[error("--timezone cannot be combined with the default schedule: give a cron expression, or no time zone")]
    TimezoneWithDefault,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the token is not valid for region {given} ({url}) but is accepted by region {actual}: run again with --region {actual}")]
    WrongRegion {
        given: Region,
        actual: Region,
        url: String,
    },
    #[error("the token was rejected by region {region} ({url}) and by every other region: it is invalid or revoked. Regenerate it in the Developer Hub (your app > Authentication) and try again")]
    TokenRejected { region: Region, url: String },
    #[error("the token is valid but may not read admins ({detail}): in the Developer Hub enable the \"Read admins\" permission for the app, then regenerate the token")]
    MissingReadAdmins { detail: String },
    #[error("the workspace's REST API IP allowlist blocks this host: add this scanner's egress IP addresses in Intercom (Settings > Workspace > Security) and try again")]
    IpNotAllowed,
    #[error("cannot validate the token against region {region} ({url}): {reason}. Check network access to that host (or intercom.base_url.{region}) and try again")]
    Unreachable {
        region: Region,
        url: String,
        reason: String,
    },
    #[error("GET /me on region {region} did not return a workspace id (app.id_code): {detail}")]
    NoWorkspace { region: Region, detail: String },
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

pub enum TokenInput {
    /// The plaintext token, read from stdin; it will be sealed.
    Plain(SecretString),
    /// A reference resolved now for validation and again at every scan.
    Reference(TokenRef),
}

pub struct OnboardRequest {
    pub name: String,
    pub region: Region,
    pub token: TokenInput,
    pub schedule: Option<String>,
    pub allowed_domains: Vec<String>,
}

pub fn validate_name(name: &str) -> Result<(), OnboardError> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && Uuid::parse_str(name).is_err();
    if valid {
        Ok(())
    } else {
        Err(OnboardError::InvalidName(name.to_string()))
    }
}

/// Lower-cases and checks bare domain names (`@example.com` is accepted as `example.com`,
/// `münchen.de` is stored as its punycode); refuses a bare public suffix such as `co.uk`.
/// The one rule set lives in [`validate_allowed_domains`]; see [`allowed_domain_warnings`].
pub fn normalize_domains(raw: &[String]) -> Result<Vec<String>, OnboardError> {
    Ok(validate_allowed_domains(raw)?.domains)
}

/// What the operator should hear about valid but doubtful allowed domains (a consumer or
/// disposable mail domain allows anyone). Empty when the list is fine or invalid.
pub fn allowed_domain_warnings(raw: &[String]) -> Vec<String> {
    validate_allowed_domains(raw)
        .map(|d| d.warnings)
        .unwrap_or_default()
}

/// Combines a schedule and an optional IANA time zone into the stored form
/// (`CRON_TZ=<zone> <cron>`); the one rule for `--schedule/--timezone` and the console's
/// schedule and time-zone fields. Empty strings count as not given.
pub fn compose_schedule(
    schedule: Option<&str>,
    timezone: Option<&str>,
) -> Result<Option<String>, OnboardError> {
    let schedule = schedule.map(str::trim).filter(|s| !s.is_empty());
    let timezone = timezone.map(str::trim).filter(|s| !s.is_empty());
    match (schedule, timezone) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(OnboardError::TimezoneWithoutCron),
        (Some(s), None) => Ok(Some(s.to_string())),
        (Some(s), Some(tz)) => {
            if s.starts_with("CRON_TZ=") {
                return Err(OnboardError::TimezoneTwice);
            }
            if humantime::parse_duration(s).is_ok() {
                return Err(OnboardError::TimezoneOnInterval(s.to_string()));
            }
            Ok(Some(format!("CRON_TZ={tz} {s}")))
        }
    }
}

/// A schedule change (`instance set-schedule`, the console's schedule form): "default"
/// (or, in the console, an empty field) means `scheduler.default_schedule`, stored as
/// NULL. Returns the stored value, checked with [`validate_schedule`].
pub fn schedule_change(
    schedule: &str,
    timezone: Option<&str>,
) -> Result<Option<String>, OnboardError> {
    let s = schedule.trim();
    if s.eq_ignore_ascii_case("default") {
        if timezone.is_some_and(|t| !t.trim().is_empty()) {
            return Err(OnboardError::TimezoneWithDefault);
        }
        return Ok(None);
    }
    if s.is_empty() {
        return Err(ScheduleError::Empty.into());
    }
    let stored = compose_schedule(Some(s), timezone)?;
    validate_schedule(stored.as_deref())
}

/// The next `n` regular runs of `schedule` after `now`, before jitter: what the forms
/// preview (the daemon adds at most `scheduler.jitter` / `cron_jitter` to each).
pub fn next_runs(schedule: &Schedule, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut at = now;
    (0..n)
        .map(|_| {
            at = schedule.next_after(at);
            at
        })
        .collect()
}

/// A token reference as typed (`file:/path`, `env:VAR`), refused when it points at the
/// scanner's own key file: validating it would send the key to Intercom as a bearer token.
pub fn token_reference(
    raw: &str,
    own_key_file: Option<&std::path::Path>,
) -> Result<TokenRef, OnboardError> {
    let reference = raw.trim().parse::<TokenRef>()?;
    TokenSource::Reference(reference.clone()).refuse_own_key_file(own_key_file)?;
    Ok(reference)
}

pub fn validate_schedule(schedule: Option<&str>) -> Result<Option<String>, OnboardError> {
    match schedule {
        None => Ok(None),
        Some(s) => {
            Schedule::parse(s)?;
            Ok(Some(s.trim().to_string()))
        }
    }
}

/// Checks the token with `GET /me` on its region; on 401 asks the other regions.
/// Returns the workspace id and name.
pub async fn verify_token(
    client: &IntercomClient,
    region: Region,
    token: &SecretString,
) -> Result<(String, Option<String>), OnboardError> {
    let c = check_token(client, region, token).await?;
    Ok((c.workspace_id, c.workspace_name))
}

/// What `GET /me` says about a valid token.
#[derive(Debug, Clone)]
pub struct CheckedToken {
    pub workspace_id: String,
    pub workspace_name: Option<String>,
    /// The registrable domain of the token owner's address (`eu.acme.co.uk` → `acme.co.uk`,
    /// Public Suffix List), what an empty allowed-domains list stands for; None when the
    /// address is missing or has no registrable domain.
    pub owner_domain: Option<String>,
}

/// [`verify_token`], keeping the owner's registrable domain (the console's "Check token"
/// prefills the allowed domains with it).
pub async fn check_token(
    client: &IntercomClient,
    region: Region,
    token: &SecretString,
) -> Result<CheckedToken, OnboardError> {
    let url = client.settings().base_url.get(region).to_string();
    match client.session(region, token.clone()).me().await {
        Ok(me) => {
            let owner_domain = me.email.as_deref().and_then(owner_domain);
            let app = me.app.unwrap_or_default();
            let id = app
                .id_code
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| OnboardError::NoWorkspace {
                    region,
                    detail: "the response has no app.id_code".into(),
                })?;
            Ok(CheckedToken {
                workspace_id: id,
                workspace_name: app.name,
                owner_domain,
            })
        }
        Err(IntercomError::Unauthorized { .. }) => {
            for other in Region::ALL.into_iter().filter(|r| *r != region) {
                if client.session(other, token.clone()).me().await.is_ok() {
                    return Err(OnboardError::WrongRegion {
                        given: region,
                        actual: other,
                        url,
                    });
                }
            }
            Err(OnboardError::TokenRejected { region, url })
        }
        Err(IntercomError::NotPermitted { code, message, .. }) => {
            Err(OnboardError::MissingReadAdmins {
                detail: format!("{code}: {message}"),
            })
        }
        Err(IntercomError::IpNotAllowed { .. }) => Err(OnboardError::IpNotAllowed),
        Err(other) => Err(OnboardError::Unreachable {
            region,
            url,
            reason: other.to_string(),
        }),
    }
}

/// The registrable domain of an address (`Ada@EU.Acme.co.uk` → `acme.co.uk`).
fn owner_domain(email: &str) -> Option<String> {
    let (_, host) = email.rsplit_once('@')?;
    let host = crate::checks::domains::normalize_domain(host)?;
    crate::checks::domains::registrable(&host).map(str::to_string)
}

/// The whole `instance add`: validate input, verify the token, then store. Nothing is
/// written unless every step succeeded; the instance and its audit row (by `actor`)
/// commit together.
pub async fn onboard(
    pool: &PgPool,
    client: &IntercomClient,
    keyring: Option<&Keyring>,
    request: OnboardRequest,
    actor: &Actor,
) -> Result<Instance, OnboardError> {
    validate_name(&request.name)?;
    let domains = normalize_domains(&request.allowed_domains)?;
    let schedule = validate_schedule(request.schedule.as_deref())?;
    if let TokenInput::Plain(_) = request.token {
        keyring.ok_or(CryptoError::MissingKey)?;
    }
    if instances::name_taken(pool, &request.name).await? {
        return Err(InstanceError::DuplicateName(request.name).into());
    }
    let plaintext = match &request.token {
        TokenInput::Plain(t) => t.clone(),
        TokenInput::Reference(r) => r.resolve()?,
    };
    let (workspace_id, workspace_name) = verify_token(client, request.region, &plaintext).await?;
    if let Some(existing) =
        instances::find_by_workspace(pool, request.region, &workspace_id).await?
    {
        return Err(InstanceError::DuplicateWorkspace {
            workspace_id,
            region: request.region,
            existing: existing.name,
        }
        .into());
    }
    let id = Uuid::new_v4();
    let source = match request.token {
        TokenInput::Plain(t) => {
            let ring = keyring.ok_or(CryptoError::MissingKey)?;
            TokenSource::Sealed(ring.seal(&t, id.as_bytes()))
        }
        TokenInput::Reference(r) => TokenSource::Reference(r),
    };
    let mut tx = pool.begin().await?;
    let instance = instances::insert_on(
        &mut tx,
        &NewInstance {
            id,
            name: &request.name,
            region: request.region,
            workspace_id: &workspace_id,
            workspace_name: workspace_name.as_deref(),
            token: &source,
            schedule: schedule.as_deref(),
            allowed_domains: &domains,
        },
    )
    .await?;
    let token_kind = &instance.token_kind;
    audit::record(
        &mut tx,
        actor,
        "instance.add",
        &instance.name,
        serde_json::json!({
            "instance_id": instance.id,
            "region": instance.region,
            "workspace_id": instance.workspace_id,
            "token": token_kind,
            "schedule": instance.schedule,
            "allowed_domains": instance.allowed_domains,
        }),
    )
    .await?;
    instances::notify_wakeup(&mut *tx).await?;
    tx.commit().await?;
    Ok(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_domain_is_the_registrable_domain_of_the_address() {
        assert_eq!(
            owner_domain("Ada@EU.Acme.co.uk").as_deref(),
            Some("acme.co.uk")
        );
        assert_eq!(
            owner_domain("ada@acme.example").as_deref(),
            Some("acme.example")
        );
        assert_eq!(owner_domain("ada@co.uk"), None, "a bare public suffix");
        assert_eq!(owner_domain("no-at-sign"), None);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("acme-prod_1.eu").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-acme").is_err());
        assert!(validate_name("acme prod").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
        assert!(validate_name("7c9e6679-7425-40de-944b-e07fc1f90ae7").is_err());
    }

    #[test]
    fn schedules_compose_with_time_zones() {
        assert_eq!(compose_schedule(None, None).unwrap(), None);
        assert_eq!(compose_schedule(Some(" "), Some("")).unwrap(), None);
        assert_eq!(
            compose_schedule(Some("0 3 * * *"), Some("Europe/Berlin")).unwrap(),
            Some("CRON_TZ=Europe/Berlin 0 3 * * *".into())
        );
        assert!(matches!(
            compose_schedule(None, Some("UTC")),
            Err(OnboardError::TimezoneWithoutCron)
        ));
        assert!(matches!(
            compose_schedule(Some("6h"), Some("UTC")),
            Err(OnboardError::TimezoneOnInterval(_))
        ));
        assert!(matches!(
            compose_schedule(Some("CRON_TZ=UTC 0 3 * * *"), Some("UTC")),
            Err(OnboardError::TimezoneTwice)
        ));
        assert_eq!(schedule_change("default", None).unwrap(), None);
        assert!(matches!(
            schedule_change("default", Some("UTC")),
            Err(OnboardError::TimezoneWithDefault)
        ));
        assert!(matches!(
            schedule_change("10s", None),
            Err(OnboardError::Schedule(ScheduleError::TooShort(_)))
        ));
        assert_eq!(schedule_change("12h", None).unwrap(), Some("12h".into()));
    }

    #[test]
    fn previews_list_the_next_runs_in_order() {
        let now = "2026-03-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let daily = Schedule::parse("CRON_TZ=Europe/Berlin 0 3 * * *").unwrap();
        let runs = next_runs(&daily, now, 3);
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].to_rfc3339(), "2026-03-02T02:00:00+00:00");
        assert!(runs.windows(2).all(|w| w[0] < w[1]));
        let six = Schedule::parse("6h").unwrap();
        assert_eq!(
            next_runs(&six, now, 2),
            vec![
                now + chrono::Duration::hours(6),
                now + chrono::Duration::hours(12)
            ]
        );
    }

    #[test]
    fn domains_are_normalized() {
        let d = normalize_domains(&["Acme.com, @acme.co.uk".into(), "acme.com".into()]).unwrap();
        assert_eq!(d, vec!["acme.com", "acme.co.uk"]);
        assert!(normalize_domains(&["not a domain".into()]).is_err());
        assert!(normalize_domains(&["localhost".into()]).is_err());
        let err = normalize_domains(&["co.uk".into()]).unwrap_err();
        assert!(err.to_string().contains("public suffix"), "{err}");
        assert_eq!(
            normalize_domains(&["München.de".into()]).unwrap(),
            ["xn--mnchen-3ya.de"]
        );
        assert!(allowed_domain_warnings(&["acme.com".into()]).is_empty());
        let w = allowed_domain_warnings(&["gmail.com".into()]);
        assert!(w[0].contains("consumer mail domain"), "{w:?}");
    }
}

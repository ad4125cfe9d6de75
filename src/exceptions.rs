//! Adding and removing exceptions, shared by the CLI (`exception add|remove`) and the
//! console (the finding page's "Mute with an exception"): one reading of the inputs
//! ([`validate`]), then the change and exactly one audit row by the acting user in one
//! transaction. The storage rules (duplicates, unknown resources) are
//! `crate::db::exceptions`.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::db::exceptions::{self as store, ExceptionError, NewException};
use crate::expiry::{parse_expiry, ExpiryError};

/// What was asked for, as typed (flags on the CLI, form fields in the console).
pub struct ExceptionInput<'a> {
    pub check: &'a str,
    /// One resource of the check, or None for every resource.
    pub resource: Option<&'a str>,
    pub reason: &'a str,
    /// `--expires` / the expiry field; None or blank when not given.
    pub expires: Option<&'a str>,
    pub permanent: bool,
}

/// The input, read: every field valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    pub check: String,
    pub resource: Option<String>,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A field that is wrong; [`InputError::field`] names it for forms.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("unknown check {0:?}: see `intercom-sspm checks`")]
    UnknownCheck(String),
    #[error("--reason must say why the risk is accepted")]
    NoReason,
    #[error("--resource is empty: name one resource (e.g. admin:123), or omit it to cover every resource of the check")]
    EmptyResource,
    #[error("--expires is required: say when the exception ends (--expires 30d, --expires 2027-03-31), or pass --permanent for one that never expires")]
    NoExpiry,
    #[error("give either an expiry or permanent, not both")]
    ExpiryAndPermanent,
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
}

impl InputError {
    /// The form field (and CLI flag, without its dashes) the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            InputError::UnknownCheck(_) => "check",
            InputError::NoReason => "reason",
            InputError::EmptyResource => "resource",
            InputError::NoExpiry | InputError::ExpiryAndPermanent | InputError::Expiry(_) => {
                "expires"
            }
        }
    }
}

/// Reads the input as both front ends must: a known check, a reason, a non-empty resource
/// when one is named, and an expiry in the future unless the exception is permanent.
pub fn validate(input: &ExceptionInput<'_>, now: DateTime<Utc>) -> Result<Valid, InputError> {
    let check = input.check.trim();
    if crate::checks::meta(check).is_none() {
        return Err(InputError::UnknownCheck(check.to_string()));
    }
    let reason = input.reason.trim();
    if reason.is_empty() {
        return Err(InputError::NoReason);
    }
    let resource = match input.resource.map(str::trim) {
        Some("") => return Err(InputError::EmptyResource),
        r => r.map(str::to_string),
    };
    let expires = input.expires.map(str::trim).filter(|s| !s.is_empty());
    let expires_at = match (expires, input.permanent) {
        (Some(_), true) => return Err(InputError::ExpiryAndPermanent),
        (Some(s), false) => Some(parse_expiry(s, now)?),
        (None, true) => None,
        (None, false) => return Err(InputError::NoExpiry),
    };
    Ok(Valid {
        check: check.to_string(),
        resource,
        reason: reason.to_string(),
        expires_at,
    })
}

/// What [`add`] did.
#[derive(Debug, Clone, Copy)]
pub struct Added {
    pub id: Uuid,
    pub muted: u64,
}

/// Adds the exception (muting its findings) and the `exception.add` audit row in one
/// transaction; refused as `db::exceptions::add` refuses (duplicates, unknown resources).
pub async fn add(
    pool: &PgPool,
    instance_id: Uuid,
    instance_name: &str,
    valid: &Valid,
    author: &str,
    force: bool,
    actor: &Actor,
) -> Result<Added, ExceptionError> {
    let mut tx = pool.begin().await?;
    let (id, muted) = store::add(
        &mut *tx,
        &NewException {
            instance_id,
            check_id: &valid.check,
            resource: valid.resource.as_deref(),
            reason: &valid.reason,
            author,
            expires_at: valid.expires_at,
            force,
        },
    )
    .await?;
    let details = json!({
        "exception_id": id, "instance_id": instance_id, "check": valid.check,
        "resource": valid.resource, "reason": valid.reason, "expires_at": valid.expires_at,
        "muted_findings": muted,
    });
    audit::record(&mut tx, actor, "exception.add", instance_name, details).await?;
    tx.commit().await?;
    Ok(Added { id, muted })
}

/// Removes the exception (its findings reopen) with the `exception.remove` audit row in
/// one transaction. Returns how many findings reopened, None when it did not exist.
pub async fn remove(pool: &PgPool, id: Uuid, actor: &Actor) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let target = store::instance_name_of(&mut *tx, id).await?;
    let Some(reopened) = store::remove(&mut *tx, id).await? else {
        return Ok(None);
    };
    let details = json!({ "exception_id": id, "reopened_findings": reopened });
    audit::record(
        &mut tx,
        actor,
        "exception.remove",
        &target.unwrap_or_default(),
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(reopened))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn input<'a>(expires: Option<&'a str>, permanent: bool) -> ExceptionInput<'a> {
        ExceptionInput {
            check: "admin_external_domain",
            resource: Some(" admin:1 "),
            reason: " approved ",
            expires,
            permanent,
        }
    }

    #[test]
    fn a_valid_input_is_trimmed_and_its_expiry_read() {
        let v = validate(&input(Some("30d"), false), now()).unwrap();
        assert_eq!(v.resource.as_deref(), Some("admin:1"));
        assert_eq!(v.reason, "approved");
        assert_eq!(v.expires_at, Some(now() + chrono::Duration::days(30)));
        let p = validate(&input(Some("  "), true), now()).unwrap();
        assert_eq!(p.expires_at, None, "a blank expiry with permanent");
    }

    #[test]
    fn each_wrong_field_is_named() {
        let cases: Vec<(ExceptionInput, &str)> = vec![
            (
                ExceptionInput {
                    check: "no_such_check",
                    ..input(Some("30d"), false)
                },
                "check",
            ),
            (
                ExceptionInput {
                    reason: "  ",
                    ..input(Some("30d"), false)
                },
                "reason",
            ),
            (
                ExceptionInput {
                    resource: Some(" "),
                    ..input(Some("30d"), false)
                },
                "resource",
            ),
            (input(None, false), "expires"),
            (input(Some(""), false), "expires"),
            (input(Some("30d"), true), "expires"),
            (input(Some("2001-01-01"), false), "expires"),
            (input(Some("soon"), false), "expires"),
        ];
        for (i, field) in cases {
            let e = validate(&i, now()).unwrap_err();
            assert_eq!(e.field(), field, "{e}");
        }
    }
}

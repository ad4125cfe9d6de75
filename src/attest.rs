//! Attesting manual controls: the rules for a new attestation and the writes that record
//! or remove one, shared by the CLI (`attest add | remove`) and the console's attestation
//! page. Each write commits with exactly one audit row by `actor` in one transaction; the
//! storage itself is `crate::db::attestations`.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::checks::{self, CheckMeta, Source};
use crate::db::attestations::{self, AttestationError, Removed};
use crate::db::instances::Instance;
use crate::expiry::{parse_expiry, ExpiryError};

/// How long an attestation counts when no expiry is given (CHECKS.md): manual settings
/// drift unseen, so every attestation is reviewed again after a while.
pub const DEFAULT_VALIDITY_DAYS: i64 = 90;

/// Why an attestation was not recorded. The messages are the CLI's (they name its flags);
/// the console names the field by variant.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("{control:?} is not a manual control: use one of {}", manual_ids().join(", "))]
    NotManual { control: String },
    #[error("--evidence must say what proves the control is in place")]
    NoEvidence,
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    #[error(transparent)]
    Stored(#[from] AttestationError),
}

impl From<sqlx::Error> for AttestError {
    fn from(e: sqlx::Error) -> Self {
        AttestError::Stored(AttestationError::Db(e))
    }
}

/// The manual controls of the catalog: the only checks an attestation can make pass.
pub fn manual_controls() -> impl Iterator<Item = &'static CheckMeta> {
    checks::catalog()
        .iter()
        .filter(|m| m.source == Source::Manual)
}

fn manual_ids() -> Vec<&'static str> {
    manual_controls().map(|m| m.id).collect()
}

/// The manual control `control` names.
pub fn control(control: &str) -> Result<&'static CheckMeta, AttestError> {
    let id = control.trim();
    manual_controls()
        .find(|m| m.id == id)
        .ok_or_else(|| AttestError::NotManual {
            control: control.to_string(),
        })
}

/// The evidence as stored (trimmed); it must say something.
pub fn evidence(text: &str) -> Result<String, AttestError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(AttestError::NoEvidence);
    }
    Ok(t.to_string())
}

/// When the attestation stops counting: `expires` (see `crate::expiry`) or, when None,
/// [`DEFAULT_VALIDITY_DAYS`] from `now`.
pub fn expires_at(expires: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, AttestError> {
    match expires {
        Some(s) => Ok(parse_expiry(s, now)?),
        None => Ok(now + Duration::days(DEFAULT_VALIDITY_DAYS)),
    }
}

/// An attestation that passed every rule, ready to record.
#[derive(Debug, Clone)]
pub struct NewAttestation {
    pub control: &'static str,
    pub evidence: String,
    pub expires_at: DateTime<Utc>,
}

/// All rules at once, the first failure as the error (the CLI's order: control,
/// evidence, expiry). The console checks the three separately to name every bad field.
pub fn validate(
    control_id: &str,
    evidence_text: &str,
    expires: Option<&str>,
    now: DateTime<Utc>,
) -> Result<NewAttestation, AttestError> {
    Ok(NewAttestation {
        control: control(control_id)?.id,
        evidence: evidence(evidence_text)?,
        expires_at: expires_at(expires, now)?,
    })
}

/// Records `a` on `instance` by `author` (refused while an unexpired attestation of the
/// control exists there), with its audit row, in one transaction.
pub async fn add(
    pool: &PgPool,
    instance: &Instance,
    a: &NewAttestation,
    author: &str,
    actor: &Actor,
) -> Result<Uuid, AttestError> {
    let mut tx = pool.begin().await?;
    let id = attestations::add(
        &mut *tx,
        instance.id,
        a.control,
        &a.evidence,
        author,
        a.expires_at,
    )
    .await?;
    let details = json!({
        "attestation_id": id, "instance_id": instance.id, "control": a.control,
        "evidence": a.evidence, "expires_at": a.expires_at,
    });
    audit::record(&mut tx, actor, "attest.add", &instance.name, details).await?;
    tx.commit().await?;
    Ok(id)
}

/// Deletes attestation `id` and writes its audit row on `conn` (the caller's transaction,
/// committed by the caller); None when it did not exist. Its control is `not_evaluated`
/// again from the next scan.
pub async fn remove(
    conn: &mut PgConnection,
    id: Uuid,
    actor: &Actor,
) -> Result<Option<Removed>, sqlx::Error> {
    let Some(removed) = attestations::remove(&mut *conn, id).await? else {
        return Ok(None);
    };
    let details = json!({ "attestation_id": id, "control": removed.control_id });
    audit::record(
        conn,
        actor,
        "attest.remove",
        &removed.instance_name,
        details,
    )
    .await?;
    Ok(Some(removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn only_manual_controls_with_evidence_and_a_future_expiry() {
        let ok = validate(" manual_2fa_enforced ", "  SEC-42 ", None, now()).unwrap();
        assert_eq!(ok.control, "manual_2fa_enforced");
        assert_eq!(ok.evidence, "SEC-42");
        assert_eq!(ok.expires_at, now() + Duration::days(90));
        let e = validate("identity_verification_enabled", "x", None, now()).unwrap_err();
        assert!(matches!(e, AttestError::NotManual { .. }));
        assert!(e.to_string().contains("manual_sso_required"), "{e}");
        assert!(matches!(
            validate("manual_2fa_enforced", " \n", None, now()),
            Err(AttestError::NoEvidence)
        ));
        assert!(matches!(
            validate("manual_2fa_enforced", "x", Some("2001-01-01"), now()),
            Err(AttestError::Expiry(ExpiryError::Past { .. }))
        ));
        assert_eq!(
            expires_at(Some("2w"), now()).unwrap(),
            now() + Duration::weeks(2)
        );
    }
}

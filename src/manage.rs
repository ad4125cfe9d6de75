//! Day-2 changes to an onboarded instance, shared by the CLI (`instance enable|disable|
//! remove|set-token|set-schedule|set-domains`, `scan --queue`) and the console's actions.
//! Each one validates with the onboarding rules (`crate::onboard`), then writes the change
//! and exactly one audit row by `actor` in one transaction, and wakes the daemons when a
//! scan may have become due. Onboarding itself is `crate::onboard::onboard`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::checks::overrides::{self, Edit, OverrideError};
use crate::checks::CheckSettings;
use crate::crypto::{CryptoError, Keyring};
use crate::db::instances::{self, Instance};
use crate::intercom::IntercomClient;
use crate::onboard::{self, OnboardError, TokenInput};
use crate::region::Region;
use crate::schedule::Schedule;
use crate::scheduler::timing::Jitter;
use crate::token::TokenSource;

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Onboard(#[from] OnboardError),
    #[error("the new token is not valid for {instance}'s region {given} but is accepted by region {actual}: it belongs to a workspace in {actual}. Use a token of the {given} workspace, or onboard the other one with `intercom-sspm instance add --name NAME --region {actual} --token-stdin`")]
    TokenOfOtherRegion {
        instance: String,
        given: Region,
        actual: Region,
    },
    #[error("the new token belongs to workspace {new}, but {instance} is workspace {current}: onboard it as a new instance instead")]
    OtherWorkspace {
        instance: String,
        current: String,
        new: String,
    },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The audit row of an instance change, in the change's transaction.
async fn audit_instance(
    conn: &mut sqlx::PgConnection,
    actor: &Actor,
    action: &str,
    instance: &Instance,
    mut details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    details["instance_id"] = serde_json::json!(instance.id);
    audit::record(conn, actor, action, &instance.name, details).await
}

/// Makes the instance due now and wakes the daemons ("scan now", `scan --queue`).
pub async fn queue_scan(
    pool: &PgPool,
    instance: &Instance,
    actor: &Actor,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    instances::make_due(&mut *tx, instance.id).await?;
    audit_instance(
        &mut tx,
        actor,
        "instance.scan_now",
        instance,
        serde_json::json!({}),
    )
    .await?;
    instances::notify_wakeup(&mut *tx).await?;
    tx.commit().await
}

/// Resumes (due at once) or stops scheduled scans; findings are kept either way.
pub async fn set_enabled(
    pool: &PgPool,
    instance: &Instance,
    enabled: bool,
    actor: &Actor,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    instances::set_enabled(&mut *tx, instance.id, enabled).await?;
    let action = if enabled {
        "instance.enable"
    } else {
        "instance.disable"
    };
    audit_instance(&mut tx, actor, action, instance, serde_json::json!({})).await?;
    if enabled {
        instances::notify_wakeup(&mut *tx).await?;
    }
    tx.commit().await
}

/// What removing an instance deletes with it (by cascade), for the confirmation step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalImpact {
    pub scans: i64,
    pub findings: i64,
    pub exceptions: i64,
    pub attestations: i64,
    pub teammates: i64,
    pub activity_events: i64,
}

pub async fn removal_impact(pool: &PgPool, id: Uuid) -> Result<RemovalImpact, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM sspm.scans WHERE instance_id = $1) AS "scans!",
             (SELECT count(*) FROM sspm.finding_rows WHERE instance_id = $1) AS "findings!",
             (SELECT count(*) FROM sspm.exceptions WHERE instance_id = $1) AS "exceptions!",
             (SELECT count(*) FROM sspm.attestations WHERE instance_id = $1) AS "attestations!",
             (SELECT count(*) FROM sspm.admin_rows WHERE instance_id = $1) AS "teammates!",
             (SELECT count(*) FROM sspm.activity_events WHERE instance_id = $1) AS "activity_events!""#,
        id
    )
    .fetch_one(pool)
    .await?;
    Ok(RemovalImpact {
        scans: r.scans,
        findings: r.findings,
        exceptions: r.exceptions,
        attestations: r.attestations,
        teammates: r.teammates,
        activity_events: r.activity_events,
    })
}

/// Deletes the instance with its scans, findings and history. False when it was already gone.
pub async fn remove(
    pool: &PgPool,
    instance: &Instance,
    actor: &Actor,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !instances::remove(&mut *tx, instance.id).await? {
        return Ok(false);
    }
    audit_instance(
        &mut tx,
        actor,
        "instance.remove",
        instance,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Sets the organisation's email domains (validated like onboarding); returns them normalized.
pub async fn set_domains(
    pool: &PgPool,
    instance: &Instance,
    raw: &[String],
    actor: &Actor,
) -> Result<Vec<String>, ManageError> {
    let domains = onboard::normalize_domains(raw)?;
    let mut tx = pool.begin().await?;
    instances::set_allowed_domains(&mut *tx, instance.id, &domains).await?;
    audit_instance(
        &mut tx,
        actor,
        "instance.set_domains",
        instance,
        serde_json::json!({ "allowed_domains": domains }),
    )
    .await?;
    tx.commit().await?;
    Ok(domains)
}

/// A stored schedule change and when the next scan now runs.
#[derive(Debug, Clone)]
pub struct ScheduleChange {
    /// What is stored: None = `scheduler.default_schedule`.
    pub stored: Option<String>,
    pub effective: Schedule,
    pub next_scan_at: DateTime<Utc>,
}

/// Changes the schedule (`stored` from [`onboard::schedule_change`]). The next scan is the
/// slot (with jitter) the daemon would pick after a scan at the last scan's time, so what
/// is shown and stored is when the scan really runs.
pub async fn set_schedule(
    pool: &PgPool,
    instance: &Instance,
    stored: Option<String>,
    default_schedule: &str,
    jitter: Jitter,
    actor: &Actor,
) -> Result<ScheduleChange, ManageError> {
    let effective = Schedule::parse(stored.as_deref().unwrap_or(default_schedule))
        .map_err(OnboardError::from)?;
    // The same slot and jitter the daemon would pick after a scan at last_scan_at, so what
    // is stored and shown is when the scan really runs; from the database's clock, as the
    // daemon's own computations are.
    let now = crate::db::now(pool).await?;
    let base = instance.last_scan_at.unwrap_or(now);
    let next = crate::scheduler::timing::next_on_success(&effective, base, jitter).max(now);
    let mut tx = pool.begin().await?;
    instances::set_schedule(&mut *tx, instance.id, stored.as_deref(), next).await?;
    audit_instance(
        &mut tx,
        actor,
        "instance.set_schedule",
        instance,
        serde_json::json!({ "schedule": stored, "next_scan_at": next }),
    )
    .await?;
    instances::notify_wakeup(&mut *tx).await?;
    tx.commit().await?;
    Ok(ScheduleChange {
        stored,
        effective,
        next_scan_at: next,
    })
}

/// Replaces the token after validating it with `GET /me` on the instance's region (its
/// region is fixed at onboarding); a token of another workspace is refused. Returns the
/// workspace id. The audit row records only the kind of token source.
pub async fn replace_token(
    pool: &PgPool,
    client: &IntercomClient,
    keyring: Option<&Keyring>,
    instance: &Instance,
    token: TokenInput,
    actor: &Actor,
) -> Result<String, ManageError> {
    if let TokenInput::Plain(_) = token {
        keyring.ok_or(OnboardError::Crypto(CryptoError::MissingKey))?;
    }
    let plaintext = match &token {
        TokenInput::Plain(t) => t.clone(),
        TokenInput::Reference(r) => r.resolve().map_err(OnboardError::from)?,
    };
    let (workspace_id, _) = match onboard::verify_token(client, instance.region, &plaintext).await {
        Ok(v) => v,
        Err(OnboardError::WrongRegion { given, actual, .. }) => {
            return Err(ManageError::TokenOfOtherRegion {
                instance: instance.name.clone(),
                given,
                actual,
            })
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(current) = &instance.workspace_id {
        if current != &workspace_id {
            return Err(ManageError::OtherWorkspace {
                instance: instance.name.clone(),
                current: current.clone(),
                new: workspace_id,
            });
        }
    }
    let source = match token {
        TokenInput::Plain(t) => {
            let ring = keyring.ok_or(OnboardError::Crypto(CryptoError::MissingKey))?;
            TokenSource::Sealed(ring.seal(&t, instance.id.as_bytes()))
        }
        TokenInput::Reference(r) => TokenSource::Reference(r),
    };
    let kind = match &source {
        TokenSource::Sealed(_) => "sealed",
        TokenSource::Reference(_) => "reference",
    };
    let mut tx = pool.begin().await?;
    instances::set_token(&mut *tx, instance.id, &source).await?;
    // Only the kind of token source: never the token, nor where a reference points.
    audit_instance(
        &mut tx,
        actor,
        "instance.set_token",
        instance,
        serde_json::json!({ "token": kind }),
    )
    .await?;
    instances::notify_wakeup(&mut *tx).await?;
    tx.commit().await?;
    Ok(workspace_id)
}

/// Why check overrides were not changed.
#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    #[error(transparent)]
    Invalid(#[from] OverrideError),
    #[error("instance {0:?} was removed meanwhile")]
    Gone(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The overrides after a change, and whether anything changed.
#[derive(Debug, Clone)]
pub struct OverridesChange {
    pub overrides: serde_json::Value,
    pub changed: bool,
}

/// Applies `edits` to the instance's check overrides, validated against `base` (the
/// deployment's `[checks]`) as the next scan will apply them. A change writes one audit
/// row with the previous and the new overrides; no change writes nothing.
pub async fn set_check_overrides(
    pool: &PgPool,
    instance: &Instance,
    base: &CheckSettings,
    edits: &[Edit],
    actor: &Actor,
) -> Result<OverridesChange, OverridesError> {
    let mut tx = pool.begin().await?;
    let current = instances::check_overrides_for_update(&mut *tx, instance.id)
        .await?
        .ok_or_else(|| OverridesError::Gone(instance.name.clone()))?;
    let new = serde_json::Value::Object(overrides::apply(base, &current, edits)?);
    if new == current {
        return Ok(OverridesChange {
            overrides: new,
            changed: false,
        });
    }
    instances::set_check_overrides(&mut *tx, instance.id, &new).await?;
    audit_instance(
        &mut tx,
        actor,
        "instance.set_check_overrides",
        instance,
        serde_json::json!({ "check_overrides": new, "previous": current }),
    )
    .await?;
    tx.commit().await?;
    Ok(OverridesChange {
        overrides: new,
        changed: true,
    })
}

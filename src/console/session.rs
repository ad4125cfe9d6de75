//! Sessions in Postgres. The cookie holds 32 random bytes (base64url); the table holds
//! only their SHA-256, so neither a database dump nor a reader can replay a session.
//! Expiry: idle (`session_idle_timeout` since the last request) and absolute
//! (`session_absolute_timeout` since sign-in), both enforced in the lookup's WHERE.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::role::Role;

/// `__Host-` makes browsers refuse the cookie unless Secure, host-only and Path=/.
pub const SECURE_COOKIE: &str = "__Host-sspm_session";
/// Plain-HTTP development (`console.insecure_cookies`) cannot use the prefix.
pub const INSECURE_COOKIE: &str = "sspm_session";

pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        INSECURE_COOKIE
    }
}

/// A fresh unguessable id (256 bits from the OS generator).
pub fn new_id() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_id(id: &SecretString) -> Vec<u8> {
    Sha256::digest(id.expose_secret().as_bytes()).to_vec()
}

/// Who a live session belongs to.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
}

pub async fn create(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    absolute: Duration,
    client_addr: &str,
) -> Result<SecretString, sqlx::Error> {
    let id = new_id();
    sqlx::query!(
        "INSERT INTO sspm.console_sessions (id_hash, user_id, expires_at, client_addr)
         VALUES ($1, $2, now() + make_interval(secs => $3), $4)",
        hash_id(&id),
        user_id,
        absolute.as_secs_f64(),
        client_addr
    )
    .execute(executor)
    .await?;
    Ok(id)
}

/// The session's user when it is live (neither idle nor past its absolute end, user
/// enabled), touching its last-seen time; None otherwise.
///
/// The touch is skipped while the last one is younger than 1/60 of the idle timeout (30 s
/// of 30 min): a request then writes nothing, so its transaction commits without a WAL
/// flush, which was a disk sync on every page view. The idle end moves by at most that
/// much.
pub async fn lookup(
    executor: impl PgExecutor<'_>,
    id: &SecretString,
    idle: Duration,
) -> Result<Option<SessionUser>, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH live AS (
               SELECT s.id_hash, s.last_seen_at, u.id, u.name, u.role
               FROM sspm.console_sessions s JOIN sspm.console_users u ON u.id = s.user_id
               WHERE s.id_hash = $1 AND NOT u.disabled
                 AND s.expires_at > now()
                 AND s.last_seen_at > now() - make_interval(secs => $2)
           ), touched AS (
               UPDATE sspm.console_sessions s SET last_seen_at = now()
               FROM live
               WHERE s.id_hash = live.id_hash
                 AND live.last_seen_at < now() - make_interval(secs => $2 / 60)
           )
           SELECT id AS "id!", name AS "name!", role AS "role!" FROM live"#,
        hash_id(id),
        idle.as_secs_f64()
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|r| SessionUser {
        user_id: r.id,
        name: r.name,
        // Constrained column; fail closed to the least role.
        role: r.role.parse().unwrap_or(Role::Viewer),
    }))
}

pub async fn delete(executor: impl PgExecutor<'_>, id: &SecretString) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM sspm.console_sessions WHERE id_hash = $1",
        hash_id(id)
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Drops sessions that can no longer be used (run at each sign-in; cheap with the index).
pub async fn purge_expired(
    executor: impl PgExecutor<'_>,
    idle: Duration,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM sspm.console_sessions
         WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => $1)",
        idle.as_secs_f64()
    )
    .execute(executor)
    .await?
    .rows_affected())
}

/// A console cookie: HttpOnly, SameSite=Strict, Path=/, Secure unless insecure_cookies.
/// No Max-Age: the browser forgets it when closed, the server enforces the timeouts.
pub fn build_cookie(
    name: &'static str,
    value: String,
    secure: bool,
) -> axum_extra::extract::cookie::Cookie<'static> {
    use axum_extra::extract::cookie::{Cookie, SameSite};
    Cookie::build((name, value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
}

/// Clears a cookie (Max-Age=0) with the same attributes.
pub fn removal_cookie(
    name: &'static str,
    secure: bool,
) -> axum_extra::extract::cookie::Cookie<'static> {
    let mut c = build_cookie(name, String::new(), secure);
    c.make_removal();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_stored_only_as_hashes() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose_secret()).unwrap().len(), 32);
        let h = hash_id(&a);
        assert_eq!(h.len(), 32);
        assert!(!URL_SAFE_NO_PAD.encode(&h).contains(a.expose_secret()));
    }
}

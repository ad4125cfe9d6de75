//! Local console users: names, roles and argon2id password hashes in
//! `sspm.console_users`. Shared by `intercom-sspm user ...` and the sign-in page.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::role::Role;

/// NIST 800-63B's floor for memorised secrets chosen by the user is 8; we ask for more.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Bounds the hashing work an attacker can make us do with one request.
pub const MAX_PASSWORD_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user name {0:?}: use 1-64 letters, digits, '.', '_', '-' or '@'")]
    InvalidName(String),
    #[error("the password is too short: use at least {MIN_PASSWORD_LEN} characters")]
    PasswordTooShort,
    #[error("the password is too long: use at most {MAX_PASSWORD_LEN} characters")]
    PasswordTooLong,
    #[error(
        "a console user named {0:?} already exists: choose another name or use `user set-password`"
    )]
    Duplicate(String),
    #[error("no console user named {0:?}: see `intercom-sspm user list`")]
    NotFound(String),
    #[error("you cannot {0} yourself: ask another admin to do it")]
    SelfChange(&'static str),
    #[error("{0} is the last active admin: make another user admin first, or nobody could manage the console")]
    LastAdmin(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub fn role(&self) -> Role {
        // The column is constrained to the three roles; fail closed to the least.
        self.role.parse().unwrap_or(Role::Viewer)
    }
}

pub fn validate_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.to_string()))
    }
}

pub fn validate_password(password: &SecretString) -> Result<(), UserError> {
    let n = password.expose_secret().chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(UserError::PasswordTooShort);
    }
    if n > MAX_PASSWORD_LEN {
        return Err(UserError::PasswordTooLong);
    }
    Ok(())
}

/// Characters of generated passwords: no look-alikes (0/O, 1/l/I), so one read aloud or
/// copied by hand arrives intact.
const GENERATED_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 20 characters of a 57-letter alphabet: about 116 bits.
pub const GENERATED_LEN: usize = 20;

/// A random password for "generate" (console) resets, shown once to the admin.
pub fn generate_password() -> SecretString {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    let pw: String = (0..GENERATED_LEN)
        .map(|_| GENERATED_ALPHABET[rng.gen_range(0..GENERATED_ALPHABET.len())] as char)
        .collect();
    SecretString::from(pw)
}

/// What an admin does to another user that could leave the console without an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminChange {
    Demote,
    Disable,
    Remove,
}

impl AdminChange {
    fn verb(self) -> &'static str {
        match self {
            AdminChange::Demote => "demote",
            AdminChange::Disable => "disable",
            AdminChange::Remove => "remove",
        }
    }
}

/// Refuses `change` on `target` when `actor` is the target, or when the target is the
/// last active admin. Call it on the change's transaction: it locks the active admins'
/// rows, so two admins demoting each other at once cannot both succeed.
pub async fn guard_admin_change(
    conn: &mut PgConnection,
    actor: &str,
    target: &User,
    change: AdminChange,
) -> Result<(), UserError> {
    if target.name.eq_ignore_ascii_case(actor) {
        return Err(UserError::SelfChange(change.verb()));
    }
    if target.role() != Role::Admin || target.disabled {
        return Ok(());
    }
    let admins = sqlx::query_scalar!(
        "SELECT id FROM sspm.console_users WHERE role = 'admin' AND NOT disabled
         ORDER BY id FOR UPDATE"
    )
    .fetch_all(conn)
    .await?;
    if admins.len() <= 1 && admins.contains(&target.id) {
        return Err(UserError::LastAdmin(target.name.clone()));
    }
    Ok(())
}

/// An argon2id PHC string with a fresh random salt (the crate's default parameters,
/// which follow the OWASP recommendation: m=19 MiB, t=2, p=1).
pub fn hash_password(password: &SecretString) -> Result<String, UserError> {
    validate_password(password)?;
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Constant-time verification against a stored PHC string; a malformed hash never verifies.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so an unknown name costs as
/// much time as a wrong password and the two cannot be told apart.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        let pw = SecretString::from(format!("decoy-{}", hex(&random)));
        hash_password(&pw).unwrap_or_default()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn add(
    conn: &mut PgConnection,
    name: &str,
    role: Role,
    password_hash: &str,
) -> Result<User, UserError> {
    validate_name(name)?;
    let row = sqlx::query_as!(
        User,
        "INSERT INTO sspm.console_users (name, role, password_hash) VALUES ($1, $2, $3)
         RETURNING id, name, role, disabled, created_at, updated_at",
        name,
        role.as_str(),
        password_hash
    )
    .fetch_one(conn)
    .await;
    match row {
        Ok(u) => Ok(u),
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("console_users_name_key") => {
            Err(UserError::Duplicate(name.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(executor: impl PgExecutor<'_>) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        "SELECT id, name, role, disabled, created_at, updated_at
         FROM sspm.console_users ORDER BY lower(name)"
    )
    .fetch_all(executor)
    .await
}

pub async fn get(executor: impl PgExecutor<'_>, name: &str) -> Result<User, UserError> {
    sqlx::query_as!(
        User,
        "SELECT id, name, role, disabled, created_at, updated_at
         FROM sspm.console_users WHERE lower(name) = lower($1)",
        name
    )
    .fetch_optional(executor)
    .await?
    .ok_or_else(|| UserError::NotFound(name.to_string()))
}

pub async fn get_by_id(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        "SELECT id, name, role, disabled, created_at, updated_at
         FROM sspm.console_users WHERE id = $1",
        id
    )
    .fetch_optional(executor)
    .await
}

/// The user and stored hash for sign-in; None for an unknown name.
pub async fn credentials(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<(User, String)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT id, name, role, disabled, created_at, updated_at, password_hash
         FROM sspm.console_users WHERE lower(name) = lower($1)",
        name
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|r| {
        (
            User {
                id: r.id,
                name: r.name,
                role: r.role,
                disabled: r.disabled,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            r.password_hash,
        )
    }))
}

pub async fn set_role(conn: &mut PgConnection, id: Uuid, role: Role) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.console_users SET role = $2, updated_at = now() WHERE id = $1",
        id,
        role.as_str()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A new password also ends every session of the user (a reset after a compromise must
/// lock the intruder out).
pub async fn set_password(
    conn: &mut PgConnection,
    id: Uuid,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.console_users SET password_hash = $2, updated_at = now() WHERE id = $1",
        id,
        password_hash
    )
    .execute(&mut *conn)
    .await?;
    end_sessions(conn, id).await
}

/// Disabling ends the user's sessions at once.
pub async fn set_disabled(
    conn: &mut PgConnection,
    id: Uuid,
    disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.console_users SET disabled = $2, updated_at = now() WHERE id = $1",
        id,
        disabled
    )
    .execute(&mut *conn)
    .await?;
    if disabled {
        end_sessions(conn, id).await?;
    }
    Ok(())
}

pub async fn remove(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM sspm.console_users WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn end_sessions(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM sspm.console_sessions WHERE user_id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let pw = SecretString::from("correct horse battery".to_string());
        let h = hash_password(&pw).unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterx", &h));
        assert!(!verify_password("correct horse battery", "not a hash"));
        // Salted: the same password hashes differently each time.
        assert_ne!(h, hash_password(&pw).unwrap());
    }

    #[test]
    fn short_and_overlong_passwords_are_refused() {
        let short = SecretString::from("elevenchars".to_string());
        assert!(matches!(
            hash_password(&short),
            Err(UserError::PasswordTooShort)
        ));
        let long = SecretString::from("x".repeat(MAX_PASSWORD_LEN + 1));
        assert!(matches!(
            hash_password(&long),
            Err(UserError::PasswordTooLong)
        ));
        assert!(validate_password(&SecretString::from("twelve chars".to_string())).is_ok());
    }

    #[test]
    fn generated_passwords_are_long_fresh_and_valid() {
        let a = generate_password();
        let b = generate_password();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().chars().count(), GENERATED_LEN);
        assert!(validate_password(&a).is_ok());
        assert!(a
            .expose_secret()
            .bytes()
            .all(|c| GENERATED_ALPHABET.contains(&c)));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("alice@example.com").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("<script>").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
    }
}

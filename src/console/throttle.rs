//! Sign-in throttling: after `login_max_failures` failures within `login_lockout`, per
//! user name and per client address, sign-in is refused for `login_lockout`. Unknown
//! names are counted like known ones, so the throttle reveals nothing about who exists.

use std::time::Duration;

use sqlx::PgExecutor;

pub fn user_key(name: &str) -> String {
    // Bounded: the key is stored, and a name can be anything an attacker types.
    let lower: String = name.to_lowercase().chars().take(128).collect();
    format!("user:{lower}")
}

pub fn addr_key(addr: &str) -> String {
    format!("addr:{addr}")
}

/// Whether any of `keys` is locked now.
pub async fn locked(executor: impl PgExecutor<'_>, keys: &[String]) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM sspm.console_login_throttle
                          WHERE key = ANY($1) AND locked_until > now()) AS "locked!""#,
        keys
    )
    .fetch_one(executor)
    .await
}

/// Counts a failure against every key; a key reaching `max` within `window` locks.
pub async fn record_failure(
    executor: impl PgExecutor<'_>,
    keys: &[String],
    max: u32,
    window: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO sspm.console_login_throttle AS t (key, failures, first_failure_at, locked_until)
           SELECT k, 1, now(), CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $3) END
           FROM unnest($1::text[]) AS k
           ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN t.first_failure_at <= now() - make_interval(secs => $3)
                               THEN 1 ELSE t.failures + 1 END,
               first_failure_at = CASE WHEN t.first_failure_at <= now() - make_interval(secs => $3)
                                       THEN now() ELSE t.first_failure_at END,
               locked_until = CASE
                   WHEN (CASE WHEN t.first_failure_at <= now() - make_interval(secs => $3)
                              THEN 1 ELSE t.failures + 1 END) >= $2
                   THEN now() + make_interval(secs => $3)
                   ELSE t.locked_until END"#,
        keys,
        max as i32,
        window.as_secs_f64()
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// A successful sign-in clears the user's counter (not the address's: one valid account
/// must not let an address reset its budget for guessing others).
pub async fn clear(executor: impl PgExecutor<'_>, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM sspm.console_login_throttle WHERE key = $1",
        key
    )
    .execute(executor)
    .await?;
    Ok(())
}

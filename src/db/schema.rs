//! Is the database's schema the one this build expects? Only `migrate` and `run` change
//! the schema; every other command checks it first and says what to do when it is not.

use std::collections::BTreeSet;

use sqlx::PgPool;

use super::MIGRATOR;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the database has no intercom-sspm schema yet: run `intercom-sspm migrate` (or start the daemon, `intercom-sspm run`) first")]
    Missing,
    #[error("the database schema is out of date ({pending} migration(s) pending): run `intercom-sspm migrate`")]
    Pending { pending: usize },
    #[error("the database schema is newer than this build of intercom-sspm (unknown migration {version}): upgrade intercom-sspm")]
    Newer { version: i64 },
    #[error(
        "migration {version} failed part-way: fix its cause, then run `intercom-sspm migrate`"
    )]
    Dirty { version: i64 },
    #[error("checking the database schema failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// What the check could establish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    Current,
    /// The role may not read the migration history (e.g. `sspm_reader`): it can only use
    /// what it was granted, which migrations grant for the current schema.
    Unverifiable,
}

/// Compares the applied migrations with the ones this build embeds. Never writes.
pub async fn check_current(pool: &PgPool) -> Result<SchemaState, SchemaError> {
    // sqlx keeps its history unqualified in public (see `connect`'s search_path). A
    // missing table means nothing was ever migrated; a denied one, a read-only role.
    let applied = match sqlx::query!("SELECT version, success FROM _sqlx_migrations")
        .fetch_all(pool)
        .await
    {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
            return Err(SchemaError::Missing)
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => {
            return Ok(SchemaState::Unverifiable)
        }
        Err(e) => return Err(e.into()),
    };
    let known: BTreeSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    if let Some(dirty) = applied.iter().find(|r| !r.success) {
        return Err(SchemaError::Dirty {
            version: dirty.version,
        });
    }
    if let Some(newer) = applied.iter().find(|r| !known.contains(&r.version)) {
        return Err(SchemaError::Newer {
            version: newer.version,
        });
    }
    let done: BTreeSet<i64> = applied.iter().map(|r| r.version).collect();
    match known.difference(&done).count() {
        0 => Ok(SchemaState::Current),
        n if n == known.len() => Err(SchemaError::Missing),
        pending => Err(SchemaError::Pending { pending }),
    }
}

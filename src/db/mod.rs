//! Postgres access. Queries live with the table family they serve; all SQL is checked at
//! compile time (`sqlx::query!`, offline data in `.sqlx/`).

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::Settings;

pub mod activity;
pub mod admins;
pub mod exceptions;
pub mod findings;
pub mod instances;
pub mod keys;
pub mod scans;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database.url is not a valid Postgres URL: {0}")]
    BadUrl(String),
    #[error("cannot connect to Postgres: {0}")]
    Connect(String),
    #[error("applying migrations failed: {0}")]
    Migrate(String),
}

/// Connects lazily-verified: the first acquire proves the server is there.
pub async fn connect(settings: &Settings) -> Result<PgPool, DbError> {
    let url = settings
        .database_url()
        .map_err(|e| DbError::BadUrl(e.to_string()))?;
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .map_err(|e: sqlx::Error| DbError::BadUrl(redact_url_error(&e.to_string())))?;
    // Every query names schema sspm; only sqlx's own _sqlx_migrations table is unqualified.
    // Pin it to public: with the default "$user", public a database user named `sspm`
    // would look for it in schema sspm once that exists, and re-run applied migrations.
    let options = options
        .application_name("intercom-sspm")
        .options([("search_path", "public")]);
    PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(settings.database.acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_with(options)
        .await
        .map_err(|e| DbError::Connect(e.to_string()))
}

pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| DbError::Migrate(e.to_string()))
}

/// sqlx's URL errors may echo the URL (and its password); keep only the reason.
fn redact_url_error(message: &str) -> String {
    if message.contains("://") {
        "malformed connection URL (expected postgres://user:password@host:port/database)".into()
    } else {
        message.to_string()
    }
}

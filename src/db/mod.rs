//! Postgres access. Queries live with the table family they serve; all SQL is checked at
//! compile time (`sqlx::query!`, offline data in `.sqlx/`).

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::Settings;
use crate::status::TextEnum;

pub mod activity;
pub mod admins;
pub mod attestations;
pub mod exceptions;
pub mod findings;
pub mod id_prefix;
pub mod instances;
pub mod keys;
pub mod leases;
pub mod scans;
pub mod schema;
pub mod workspace;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database's clock: `now()`, the start of the current transaction (of this statement
/// outside one). Every persisted time and every schedule computation uses it, never the
/// replica's own clock: replicas may be skewed against each other, Postgres is the one
/// clock they share (leases are timed by it too).
pub async fn now(
    executor: impl sqlx::PgExecutor<'_>,
) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(executor)
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Not configured, or not a Postgres URL: retrying cannot help.
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot connect to Postgres at {target}: {reason}. Check DATABASE_URL (or database.url) and that the server is running and reachable")]
    Connect { target: String, reason: String },
    #[error("applying migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl DbError {
    /// Whether retrying may help: the server was unreachable, or a migration failed on
    /// the connection rather than on its SQL. A bad URL or a failing migration is final.
    pub fn transient(&self) -> bool {
        match self {
            DbError::BadUrl(_) => false,
            DbError::Connect { .. } => true,
            DbError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => transient(e),
            DbError::Migrate(_) => false,
        }
    }
}

/// The chunks a batched write of `n` rows takes, `size` rows each, as index ranges, each
/// with whether it is the last. Always at least one (possibly empty) range: the last
/// statement of a scan's write also carries its parts that are not chunked (bumps,
/// resolutions, removals), so it runs even when there is nothing to upsert.
pub fn write_chunks(n: usize, size: usize) -> impl Iterator<Item = (std::ops::Range<usize>, bool)> {
    let size = size.max(1);
    let count = n.div_ceil(size).max(1);
    (0..count).map(move |i| {
        let lo = i * size;
        ((lo..(lo + size).min(n)), i + 1 == count)
    })
}

/// Errors that come from the connection rather than from the statement.
pub fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 08xxx connection exceptions; 57P0x admin shutdown, crash shutdown, cannot connect now.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// A stored value this build does not know (a newer version wrote it, or a hand edit):
/// an error naming the row, never a silent default or a dropped row.
#[derive(Debug, thiserror::Error)]
#[error("{table} row {id}: unknown {column} {value:?} (this build knows {expected}); upgrade intercom-sspm or correct the row")]
pub struct UnknownValue {
    pub table: &'static str,
    /// The row's key: its id, or the columns of a composite key.
    pub id: String,
    pub column: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl UnknownValue {
    /// As the error a query returns, so it travels with the other database errors.
    pub fn into_sqlx(self) -> sqlx::Error {
        sqlx::Error::Decode(Box::new(self))
    }
}

/// A text column read as `T`, checked row by row so that a value this build does not know
/// is an error naming its row: select `status AS "status: Checked<FindingStatus>"`, then
/// `r.status.of("sspm.findings", r.id)?`. (Decoding straight into `T` would fail too, but
/// sqlx's message names only the column.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<T>(Result<T, String>);

impl<T: TextEnum> Checked<T> {
    /// The value, or an error naming `table`, the row and what was stored.
    pub fn of(self, table: &'static str, id: impl std::fmt::Display) -> Result<T, sqlx::Error> {
        self.column(table, "status", id)
    }

    pub fn column(
        self,
        table: &'static str,
        column: &'static str,
        id: impl std::fmt::Display,
    ) -> Result<T, sqlx::Error> {
        self.0.map_err(|value| {
            UnknownValue {
                table,
                id: id.to_string(),
                column,
                value,
                expected: T::EXPECTED,
            }
            .into_sqlx()
        })
    }
}

impl<T> sqlx::Type<sqlx::Postgres> for Checked<T> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r, T: TextEnum> sqlx::Decode<'r, sqlx::Postgres> for Checked<T> {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Checked(
            T::from_stored(text).ok_or_else(|| text.to_string()),
        ))
    }
}

/// Where, never with the password: enough for an operator to spot a wrong host.
fn target_of(options: &PgConnectOptions) -> String {
    format!(
        "{}:{} (database {:?}, user {:?})",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("default"),
        options.get_username()
    )
}

/// The configured database as `connect` names it (host, port, database, user; never the
/// password), for start-up logs; None when no valid URL is configured.
pub fn describe(settings: &Settings) -> Option<String> {
    let url = settings.database_url().ok()?;
    let options: PgConnectOptions = url.expose_secret().parse().ok()?;
    Some(target_of(&options))
}

/// Connects lazily-verified: the first acquire proves the server is there.
pub async fn connect(settings: &Settings) -> Result<PgPool, DbError> {
    let url = settings
        .database_url()
        .map_err(|e| DbError::BadUrl(e.to_string()))?;
    let scheme = url.expose_secret().split("://").next().unwrap_or("");
    if !matches!(scheme, "postgres" | "postgresql") {
        return Err(DbError::BadUrl(
            "database.url must be a Postgres URL: postgres://user:password@host:port/database"
                .into(),
        ));
    }
    let options: PgConnectOptions = url.expose_secret().parse().map_err(|e: sqlx::Error| {
        DbError::BadUrl(format!(
            "database.url is not a valid Postgres URL: {}",
            redact_url_error(&e.to_string())
        ))
    })?;
    // Every query names schema sspm; only sqlx's own _sqlx_migrations table is unqualified.
    // Pin it to public: with the default "$user", public a database user named `sspm`
    // would look for it in schema sspm once that exists, and re-run applied migrations.
    let options = options
        .application_name("intercom-sspm")
        .options([("search_path", "public")]);
    let target = target_of(&options);
    let connect_error = |reason: String| DbError::Connect {
        target: target.clone(),
        reason,
    };
    // One direct connection first: a pool only reports "timed out", this says why
    // (refused, authentication failed, database does not exist).
    match tokio::time::timeout(
        settings.database.acquire_timeout,
        <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
    )
    .await
    {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
        }
        Ok(Err(e)) => return Err(connect_error(connect_reason(&e))),
        Err(_) => {
            return Err(connect_error(format!(
                "no answer within {:?} (database.acquire_timeout)",
                settings.database.acquire_timeout
            )))
        }
    }
    PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(settings.database.acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_with(options)
        .await
        .map_err(|e| connect_error(connect_reason(&e)))
}

fn connect_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await.map_err(DbError::Migrate)
}

/// sqlx's URL errors may echo the URL (and its password); keep only the reason.
fn redact_url_error(message: &str) -> String {
    if message.contains("://") {
        "malformed connection URL (expected postgres://user:password@host:port/database)".into()
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_chunks_cover_every_row_once_and_always_end_with_one_last_chunk() {
        let chunks = |n| write_chunks(n, 3).collect::<Vec<_>>();
        assert_eq!(chunks(0), vec![(0..0, true)]);
        assert_eq!(chunks(3), vec![(0..3, true)]);
        assert_eq!(chunks(4), vec![(0..3, false), (3..4, true)]);
        assert_eq!(chunks(6), vec![(0..3, false), (3..6, true)]);
    }

    #[test]
    fn only_connection_failures_are_worth_retrying() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(transient(&io()));
        assert!(!transient(&sqlx::Error::RowNotFound));
        assert!(DbError::Migrate(sqlx::migrate::MigrateError::Execute(io())).transient());
        assert!(!DbError::Migrate(sqlx::migrate::MigrateError::VersionMissing(7)).transient());
        assert!(!DbError::BadUrl("x".into()).transient());
    }

    #[test]
    fn migrate_error_keeps_its_source() {
        let e = DbError::Migrate(sqlx::migrate::MigrateError::VersionMissing(7));
        let source = std::error::Error::source(&e).expect("the migrate error is the source");
        assert!(source.to_string().contains('7'), "{source}");
    }
}

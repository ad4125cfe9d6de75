//! What command handlers share: settings, and lazily the database, keyring and client.

use anyhow::Context as _;
use sqlx::PgPool;

use crate::config::Settings;
use crate::crypto::Keyring;
use crate::intercom::IntercomClient;

pub struct Context {
    pub settings: Settings,
}

impl Context {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    /// Connects and checks that the schema is current; never changes it (only `migrate`
    /// and `run` do), so a read-only role can use the read commands.
    pub async fn db(&self) -> anyhow::Result<PgPool> {
        let pool = crate::db::connect(&self.settings).await?;
        let state = crate::db::schema::check_current(&pool).await?;
        if state == crate::db::schema::SchemaState::Unverifiable {
            tracing::debug!(
                "this role cannot read the migration history; assuming the schema is current"
            );
        }
        Ok(pool)
    }

    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        Ok(Keyring::from_settings(&self.settings.security)?)
    }

    /// The keyring when configured; commands that can work without it (token references)
    /// decide themselves whether its absence is an error.
    pub fn keyring_optional(&self) -> anyhow::Result<Option<Keyring>> {
        match Keyring::from_settings(&self.settings.security) {
            Ok(k) => Ok(Some(k)),
            Err(crate::crypto::CryptoError::MissingKey) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn intercom(&self) -> anyhow::Result<IntercomClient> {
        IntercomClient::new(&self.settings.intercom).context("building the Intercom client")
    }

    /// A client that says on stderr when it retries (unless `--quiet`), for commands an
    /// operator watches: onboarding and token changes wait through Intercom's retries.
    pub fn intercom_with_progress(&self) -> anyhow::Result<IntercomClient> {
        let observer: crate::intercom::RetryObserver = std::sync::Arc::new(|notice| {
            if !super::output::quiet() {
                eprintln!("{notice}");
            }
        });
        Ok(self.intercom()?.with_retry_observer(observer))
    }
}

/// The id behind an optional `--instance NAME|ID` filter; an unknown name is an error.
pub async fn instance_filter(
    pool: &PgPool,
    instance: Option<&str>,
) -> anyhow::Result<Option<uuid::Uuid>> {
    match instance {
        Some(name) => Ok(Some(crate::db::instances::get(pool, name).await?.id)),
        None => Ok(None),
    }
}

//! What every console handler shares.

use std::path::PathBuf;

use ipnet::IpNet;
use sqlx::PgPool;

use super::settings::{AuthMode, ConsoleSettings};
use crate::checks::CheckSettings;
use crate::config::{NotifySettings, Settings};
use crate::crypto::{CryptoError, Keyring};
use crate::intercom::IntercomClient;
use crate::scheduler::timing::Jitter;

pub struct ConsoleState {
    pub pool: PgPool,
    pub settings: ConsoleSettings,
    pub auth: AuthMode,
    pub proxy_nets: Vec<IpNet>,
    /// What the actions (onboarding, tokens, schedules) need beyond the database; None
    /// for a read-only console built with [`ConsoleState::new`] alone.
    pub ops: Option<Ops>,
}

/// The scanner's settings the console's actions share with the CLI.
pub struct Ops {
    pub client: IntercomClient,
    /// None without `security.token_key`: token references still work, pasted tokens
    /// are refused with a message saying so.
    pub keyring: Option<Keyring>,
    pub token_key_file: Option<PathBuf>,
    pub default_schedule: String,
    pub jitter: Jitter,
    /// The deployment's `[checks]`: what per-instance overrides start from.
    pub checks: CheckSettings,
    /// For "send test" on a channel: the same sender settings `channel test` uses.
    pub notify: NotifySettings,
    pub public_url: Option<String>,
}

impl Ops {
    pub fn from_settings(settings: &Settings) -> Result<Self, super::ConsoleError> {
        let keyring = match Keyring::from_settings(&settings.security) {
            Ok(k) => Some(k),
            Err(CryptoError::MissingKey) => None,
            Err(e) => return Err(super::ConsoleError::Keyring(e)),
        };
        Ok(Self {
            client: IntercomClient::new(&settings.intercom)
                .map_err(|e| super::ConsoleError::Client(e.to_string()))?,
            keyring,
            token_key_file: settings.security.token_key_file.clone(),
            default_schedule: settings.scheduler.default_schedule.clone(),
            jitter: settings.scheduler.jitter_policy(),
            checks: settings.checks.clone(),
            notify: settings.notify.clone(),
            public_url: settings.console.public_url.clone(),
        })
    }
}

impl ConsoleState {
    /// Fails unless an authentication mode is configured: the console is never open.
    pub fn new(pool: PgPool, settings: ConsoleSettings) -> Result<Self, super::ConsoleError> {
        let auth = settings.auth.ok_or(super::ConsoleError::NoAuthMode)?;
        let proxy_nets = settings.proxy_nets();
        if auth == AuthMode::Proxy && proxy_nets.is_empty() {
            return Err(super::ConsoleError::NoTrustedProxies);
        }
        Ok(Self {
            pool,
            settings,
            auth,
            proxy_nets,
            ops: None,
        })
    }

    /// The whole console, actions included, from the product's settings (`console`,
    /// `intercom`, `security`, `scheduler`): what `run` and `console` serve.
    pub fn from_settings(pool: PgPool, settings: &Settings) -> Result<Self, super::ConsoleError> {
        let mut state = Self::new(pool, settings.console.clone())?;
        state.ops = Some(Ops::from_settings(settings)?);
        Ok(state)
    }

    pub fn secure_cookies(&self) -> bool {
        !self.settings.insecure_cookies
    }
}

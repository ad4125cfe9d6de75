//! What every console handler shares.

use ipnet::IpNet;
use sqlx::PgPool;

use super::settings::{AuthMode, ConsoleSettings};

pub struct ConsoleState {
    pub pool: PgPool,
    pub settings: ConsoleSettings,
    pub auth: AuthMode,
    pub proxy_nets: Vec<IpNet>,
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
        })
    }

    pub fn secure_cookies(&self) -> bool {
        !self.settings.insecure_cookies
    }
}

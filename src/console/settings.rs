//! `[console]` settings: where the console listens, how people authenticate, cookies,
//! timeouts and TLS. Checked at load like every other section; the console refuses to
//! start without an authentication mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::role::Role;
use crate::config::{value_error, ConfigError};

/// How the console knows who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Users from `intercom-sspm user add`, signing in with a password.
    Local,
    /// A reverse proxy (oauth2-proxy style) that has authenticated the user and says who
    /// they are in a header; accepted only from `trusted_proxies`.
    Proxy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// host:port; unset = no console. Never the same as server.listen.
    pub listen: Option<String>,
    /// `local` or `proxy`; required when `listen` is set.
    pub auth: Option<AuthMode>,
    /// Base URL people reach the console at (links in alerts and emails).
    pub public_url: Option<String>,
    /// Drops the Secure flag from cookies, for plain-HTTP use on localhost only.
    pub insecure_cookies: bool,
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub session_absolute_timeout: Duration,
    /// Failed sign-ins (per user name and per client address) before a lockout.
    pub login_max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub login_lockout: Duration,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// CIDRs of the reverse proxies allowed to assert an identity (proxy mode). A list,
    /// or one comma-separated string (for SSPM__CONSOLE__TRUSTED_PROXIES).
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    /// Header carrying the signed-in user's identity (proxy mode).
    pub proxy_user_header: String,
    /// Header carrying the role (viewer|operator|admin); unset = `proxy_default_role`.
    pub proxy_role_header: Option<String>,
    pub proxy_default_role: Role,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            listen: None,
            auth: None,
            public_url: None,
            insecure_cookies: false,
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_absolute_timeout: Duration::from_secs(12 * 3600),
            login_max_failures: 5,
            login_lockout: Duration::from_secs(15 * 60),
            tls_cert_file: None,
            tls_key_file: None,
            trusted_proxies: Vec::new(),
            proxy_user_header: "X-Forwarded-Email".into(),
            proxy_role_header: None,
            proxy_default_role: Role::Viewer,
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(l) => l,
        ListOrCsv::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

impl ConsoleSettings {
    /// The listen address when the console is enabled.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.as_deref().and_then(|l| l.parse().ok())
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// Parsed `trusted_proxies` (validated at load).
    pub fn proxy_nets(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|c| parse_net(c).ok())
            .collect()
    }

    pub fn validate(&self, server_listen: &str) -> Result<(), ConfigError> {
        for c in &self.trusted_proxies {
            parse_net(c).map_err(|e| value_error("console.trusted_proxies", &e))?;
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(value_error(
                "console.tls_cert_file",
                "set both console.tls_cert_file and console.tls_key_file, or neither",
            ));
        }
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).map_err(|e| {
                value_error("console.public_url", &format!("{url:?} is not a URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(value_error(
                    "console.public_url",
                    "must be an http(s) URL such as https://sspm.example.com",
                ));
            }
        }
        for (key, d) in [
            ("console.session_idle_timeout", self.session_idle_timeout),
            (
                "console.session_absolute_timeout",
                self.session_absolute_timeout,
            ),
            ("console.login_lockout", self.login_lockout),
        ] {
            if d.is_zero() {
                return Err(value_error(key, "must be greater than zero"));
            }
        }
        if self.login_max_failures == 0 {
            return Err(value_error(
                "console.login_max_failures",
                "must be at least 1",
            ));
        }
        if self.proxy_user_header.trim().is_empty()
            || axum::http::HeaderName::try_from(self.proxy_user_header.as_str()).is_err()
        {
            return Err(value_error(
                "console.proxy_user_header",
                "must be an HTTP header name such as X-Forwarded-Email",
            ));
        }
        if let Some(h) = &self.proxy_role_header {
            if axum::http::HeaderName::try_from(h.as_str()).is_err() {
                return Err(value_error(
                    "console.proxy_role_header",
                    "must be an HTTP header name such as X-Forwarded-Groups",
                ));
            }
        }
        let Some(listen) = &self.listen else {
            return Ok(());
        };
        let addr: SocketAddr = listen.parse().map_err(|e| {
            value_error(
                "console.listen",
                &format!("{e}; expected host:port such as 127.0.0.1:8443"),
            )
        })?;
        if server_listen.parse::<SocketAddr>().ok() == Some(addr) {
            return Err(value_error(
                "console.listen",
                "must differ from server.listen: the probes/metrics port never serves the console",
            ));
        }
        match self.auth {
            None => Err(value_error(
                "console.auth",
                "the console needs an authentication mode: set console.auth = \"local\" (users from `intercom-sspm user add`) or \"proxy\" (with console.trusted_proxies)",
            )),
            Some(AuthMode::Proxy) if self.trusted_proxies.is_empty() => Err(value_error(
                "console.trusted_proxies",
                "proxy authentication needs the reverse proxies' addresses (CIDRs such as 10.0.0.5/32)",
            )),
            Some(_) => Ok(()),
        }
    }
}

/// A CIDR, or a bare address meaning exactly that host.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> ConsoleSettings {
        ConsoleSettings {
            listen: Some("127.0.0.1:8443".into()),
            auth: Some(AuthMode::Local),
            ..Default::default()
        }
    }

    #[test]
    fn off_by_default_and_needs_an_auth_mode() {
        assert!(ConsoleSettings::default().validate("0.0.0.0:9464").is_ok());
        let mut s = enabled();
        s.auth = None;
        let e = s.validate("0.0.0.0:9464").unwrap_err().to_string();
        assert!(e.contains("console.auth"), "{e}");
        assert!(enabled().validate("0.0.0.0:9464").is_ok());
    }

    #[test]
    fn never_on_the_probe_port() {
        let e = enabled()
            .validate("127.0.0.1:8443")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn proxy_mode_needs_valid_proxies() {
        let mut s = enabled();
        s.auth = Some(AuthMode::Proxy);
        assert!(s.validate("0.0.0.0:9464").is_err());
        s.trusted_proxies = vec!["10.0.0.0/8".into(), "192.168.1.7".into()];
        assert!(s.validate("0.0.0.0:9464").is_ok());
        assert_eq!(s.proxy_nets().len(), 2);
        s.trusted_proxies.push("not-a-net".into());
        assert!(s.validate("0.0.0.0:9464").is_err());
    }

    #[test]
    fn tls_needs_both_files() {
        let mut s = enabled();
        s.tls_cert_file = Some("/etc/cert.pem".into());
        assert!(s.validate("0.0.0.0:9464").is_err());
        s.tls_key_file = Some("/etc/key.pem".into());
        assert!(s.validate("0.0.0.0:9464").is_ok());
    }
}

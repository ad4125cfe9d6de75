//! Where an instance's access token comes from: sealed in the database, or a reference
//! (`file:/path`, `env:VAR`) resolved at scan time so other systems can onboard instances
//! with plain SQL and keep the plaintext in their own secret store.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, Keyring, Sealed};

/// Longest token accepted; Intercom tokens are ~60 characters.
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is empty: paste the token from the app's Authentication page in Intercom's Developer Hub")]
    Empty,
    #[error("the access token contains whitespace or control characters inside it: copy it again without line breaks or spaces")]
    BadCharacters,
    #[error("the access token is implausibly long ({0} bytes)")]
    TooLong(usize),
    #[error("token reference {0:?} must be file:/absolute/path or env:VARIABLE_NAME")]
    BadReference(String),
    #[error("token reference {reference}: {reason}")]
    Unresolvable { reference: String, reason: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Trims surrounding whitespace (a trailing newline from `echo` or a file) and rejects
/// anything that cannot be a bearer token.
pub fn normalize_token(raw: &str) -> Result<SecretString, TokenError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(TokenError::Empty);
    }
    if trimmed.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong(trimmed.len()));
    }
    if trimmed
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(TokenError::BadCharacters);
    }
    Ok(SecretString::from(trimmed.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    File(PathBuf),
    Env(String),
}

impl FromStr for TokenRef {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TokenError::BadReference(s.to_string());
        if let Some(path) = s.strip_prefix("file:") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad());
            }
            return Ok(TokenRef::File(PathBuf::from(path)));
        }
        if let Some(var) = s.strip_prefix("env:") {
            let valid = !var.is_empty()
                && var
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(bad());
            }
            return Ok(TokenRef::Env(var.to_string()));
        }
        Err(bad())
    }
}

impl fmt::Display for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRef::File(p) => write!(f, "file:{}", p.display()),
            TokenRef::Env(v) => write!(f, "env:{v}"),
        }
    }
}

/// Why a reference to the scanner's own secrets is refused. Whoever can write
/// `sspm.instances.token_ref` (plain-SQL onboarding) must not be able to make the daemon
/// send its token key or database URL to the API as a bearer token.
const OWN_SECRET: &str = "refers to the scanner's own configuration (its token key or database credentials), not an Intercom token: point it at a file or variable that holds only the access token";

/// Environment variables that configure the scanner itself (`SSPM__SECTION__KEY`,
/// `DATABASE_URL`, libpq's password) and may hold its secrets.
fn is_own_config_var(var: &str) -> bool {
    var.starts_with("SSPM__") || var == "DATABASE_URL" || var == "PGPASSWORD"
}

impl TokenRef {
    /// Whether this is a `file:` reference to `path` (after resolving symlinks, as
    /// Kubernetes Secret mounts use them).
    pub fn is_file(&self, path: &Path) -> bool {
        let TokenRef::File(own) = self else {
            return false;
        };
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        own == path || canonical(own) == canonical(path)
    }

    /// Reads the token now. Errors name the reference, never its contents.
    pub fn resolve(&self) -> Result<SecretString, TokenError> {
        let unresolvable = |reason: String| TokenError::Unresolvable {
            reference: self.to_string(),
            reason,
        };
        if matches!(self, TokenRef::Env(var) if is_own_config_var(var)) {
            return Err(unresolvable(OWN_SECRET.into()));
        }
        let raw = match self {
            TokenRef::File(path) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| unresolvable(format!("cannot read file: {e}")))?,
            ),
            TokenRef::Env(var) => Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| unresolvable("environment variable is not set".into()))?,
            ),
        };
        normalize_token(&raw).map_err(|e| unresolvable(e.to_string()))
    }
}

/// An instance's token as stored.
#[derive(Debug, Clone)]
pub enum TokenSource {
    Sealed(Sealed),
    Reference(TokenRef),
}

impl TokenSource {
    /// Refuses a reference to the scanner's own token key file (`security.token_key_file`);
    /// see `OWN_SECRET`. Environment references are checked by `TokenRef::resolve`.
    pub fn refuse_own_key_file(&self, key_file: Option<&Path>) -> Result<(), TokenError> {
        match (self, key_file) {
            (TokenSource::Reference(r), Some(path)) if r.is_file(path) => {
                Err(TokenError::Unresolvable {
                    reference: r.to_string(),
                    reason: OWN_SECRET.into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The plaintext token for one scan. `associated` is the instance id the seal is bound to.
    pub fn reveal(
        &self,
        keyring: Option<&Keyring>,
        associated: &[u8],
    ) -> Result<SecretString, TokenError> {
        match self {
            TokenSource::Sealed(sealed) => {
                let ring = keyring.ok_or(CryptoError::MissingKey)?;
                let token = ring.open(sealed, associated)?;
                normalize_token(token.expose_secret())
            }
            TokenSource::Reference(r) => r.resolve(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_trims_and_rejects_garbage() {
        assert_eq!(normalize_token("  abc=\n").unwrap().expose_secret(), "abc=");
        assert!(matches!(normalize_token(" \n\t"), Err(TokenError::Empty)));
        assert!(matches!(
            normalize_token("ab cd"),
            Err(TokenError::BadCharacters)
        ));
        assert!(matches!(
            normalize_token("ab\u{7}cd"),
            Err(TokenError::BadCharacters)
        ));
    }

    #[test]
    fn references_parse_and_resolve() {
        assert!("file:relative".parse::<TokenRef>().is_err());
        assert!("env:1BAD".parse::<TokenRef>().is_err());
        assert!("vault:x".parse::<TokenRef>().is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "tok_from_file\n").unwrap();
        let r: TokenRef = format!("file:{}", path.display()).parse().unwrap();
        assert_eq!(r.resolve().unwrap().expose_secret(), "tok_from_file");
        let missing: TokenRef = "env:SSPM_TEST_SURELY_UNSET_VAR".parse().unwrap();
        let e = missing.resolve().unwrap_err().to_string();
        assert!(
            e.contains("env:SSPM_TEST_SURELY_UNSET_VAR") && e.contains("not set"),
            "{e}"
        );
    }

    #[test]
    fn resolve_error_never_contains_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "secret part\n").unwrap();
        let r: TokenRef = format!("file:{}", path.display()).parse().unwrap();
        let e = r.resolve().unwrap_err().to_string();
        assert!(!e.contains("secret part"), "{e}");
    }
}

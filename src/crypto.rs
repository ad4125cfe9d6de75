//! Token sealing at rest: AES-256-GCM with a random 96-bit nonce, the instance id as
//! associated data (a ciphertext copied onto another row will not open), and a key id
//! stored beside the ciphertext so keys can be rotated.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::SecuritySettings;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("no token key configured: set security.token_key (SSPM__SECURITY__TOKEN_KEY) or security.token_key_file; create one with `intercom-sspm keygen`")]
    MissingKey,
    #[error("both security.token_key and security.token_key_file are set: keep one")]
    AmbiguousKey,
    #[error("{source_name}: the token key must be base64 of exactly 32 bytes (create one with `intercom-sspm keygen`)")]
    MalformedKey { source_name: String },
    #[error("cannot read security.token_key_file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("token was sealed with key id {0}, which is not configured: add that key to security.previous_token_keys or re-enter the token with `instance set-token`")]
    UnknownKeyId(String),
    #[error("sealed token could not be opened: wrong key, or the row was altered")]
    Tampered,
    #[error("sealed token is malformed (nonce must be 12 bytes)")]
    Malformed,
}

/// One 256-bit key and its public id (a hash prefix, safe to store and log).
pub struct TokenKey {
    key: SecretBox<[u8; KEY_LEN]>,
    id: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl TokenKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"intercom-sspm token key id v1");
        hasher.update(bytes);
        let digest = hasher.finalize();
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            key: SecretBox::new(Box::new(bytes)),
            id,
        }
    }

    pub fn from_base64(encoded: &str, source_name: &str) -> Result<Self, CryptoError> {
        let malformed = || CryptoError::MalformedKey {
            source_name: source_name.to_string(),
        };
        let decoded = Zeroizing::new(B64.decode(encoded.trim()).map_err(|_| malformed())?);
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        Self::from_bytes(key.into())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Base64 for `keygen` output; the caller decides where it goes.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(B64.encode(self.key.expose_secret()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.key.expose_secret()))
    }
}

/// A sealed token as stored in `sspm.instances`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The key that seals, plus older keys that may still open during a rotation.
#[derive(Debug)]
pub struct Keyring {
    current: TokenKey,
    previous: Vec<TokenKey>,
}

impl Keyring {
    pub fn new(current: TokenKey, previous: Vec<TokenKey>) -> Self {
        Self { current, previous }
    }

    pub fn from_settings(settings: &SecuritySettings) -> Result<Self, CryptoError> {
        let current = match (&settings.token_key, &settings.token_key_file) {
            (Some(_), Some(_)) => return Err(CryptoError::AmbiguousKey),
            (Some(key), None) => TokenKey::from_base64(key.expose_secret(), "security.token_key")?,
            (None, Some(path)) => read_key_file(path)?,
            (None, None) => return Err(CryptoError::MissingKey),
        };
        let previous = settings
            .previous_token_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                TokenKey::from_base64(
                    k.expose_secret(),
                    &format!("security.previous_token_keys[{i}]"),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(current, previous))
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// The ids of the keys kept for opening only (a rotation in progress).
    pub fn previous_ids(&self) -> Vec<&str> {
        self.previous.iter().map(TokenKey::id).collect()
    }

    pub fn seal(&self, token: &SecretString, associated: &[u8]) -> Sealed {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: associated,
                },
            )
            .expect("AES-GCM encryption of a short token cannot fail");
        Sealed {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, sealed: &Sealed, associated: &[u8]) -> Result<SecretString, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(sealed.key_id.clone()))?;
        if sealed.nonce.len() != NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let plaintext = Zeroizing::new(
            key.cipher()
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: associated,
                    },
                )
                .map_err(|_| CryptoError::Tampered)?,
        );
        let text = String::from_utf8(plaintext.to_vec()).map_err(|_| CryptoError::Tampered)?;
        Ok(SecretString::from(text))
    }
}

fn read_key_file(path: &Path) -> Result<TokenKey, CryptoError> {
    let contents =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| CryptoError::KeyFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
        );
    TokenKey::from_base64(
        &contents,
        &format!("security.token_key_file {}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::new(TokenKey::generate(), vec![])
    }

    #[test]
    fn seal_open_round_trip() {
        let ring = ring();
        let token = SecretString::from("dG9rOmFiY2RlZg==");
        let sealed = ring.seal(&token, b"instance-1");
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert!(!sealed.ciphertext.windows(8).any(|w| w == &b"dG9rOmFi"[..]));
        let opened = ring.open(&sealed, b"instance-1").unwrap();
        assert_eq!(opened.expose_secret(), "dG9rOmFiY2RlZg==");
    }

    #[test]
    fn wrong_key_and_wrong_row_are_rejected() {
        let token = SecretString::from("secret-token");
        let a = ring();
        let sealed = a.seal(&token, b"row-a");
        assert!(matches!(
            a.open(&sealed, b"row-b"),
            Err(CryptoError::Tampered)
        ));
        let b = ring();
        assert!(matches!(
            b.open(&sealed, b"row-a"),
            Err(CryptoError::UnknownKeyId(_))
        ));
        // Same id claimed, different key material: authentication fails.
        let mut forged = sealed.clone();
        forged.key_id = b.current_id().to_string();
        assert!(matches!(
            b.open(&forged, b"row-a"),
            Err(CryptoError::Tampered)
        ));
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(
            a.open(&flipped, b"row-a"),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn previous_keys_open_but_never_seal() {
        let old = TokenKey::generate();
        let old_b64 = old.to_base64();
        let sealed = Keyring::new(old, vec![]).seal(&SecretString::from("t"), b"x");
        let rotated = Keyring::new(
            TokenKey::generate(),
            vec![TokenKey::from_base64(old_b64.expose_secret(), "test").unwrap()],
        );
        assert_eq!(rotated.open(&sealed, b"x").unwrap().expose_secret(), "t");
        assert_ne!(
            rotated.seal(&SecretString::from("t"), b"x").key_id,
            sealed.key_id
        );
    }

    #[test]
    fn key_parsing_errors_are_clear_and_do_not_echo_the_key() {
        let e = TokenKey::from_base64("c2hvcnQ=", "security.token_key")
            .unwrap_err()
            .to_string();
        assert!(e.contains("32 bytes") && e.contains("keygen"), "{e}");
        assert!(!e.contains("c2hvcnQ="));
        let e = Keyring::from_settings(&SecuritySettings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("keygen"), "{e}");
    }

    #[test]
    fn key_file_is_read_and_debug_redacts() {
        let key = TokenKey::generate();
        let b64 = key.to_base64();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        std::fs::write(&path, format!("{}\n", b64.expose_secret())).unwrap();
        let ring = Keyring::from_settings(&SecuritySettings {
            token_key_file: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ring.current_id(), key.id());
        assert!(!format!("{ring:?}").contains(b64.expose_secret()));
    }
}

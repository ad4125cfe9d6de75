//! Standard Webhooks signatures (https://www.standardwebhooks.com): the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`, signed with HMAC-SHA256 under the secret's
//! base64-decoded bytes (after the `whsec_` prefix), sent as `v1,<base64 signature>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("the webhook signing secret is not of the form whsec_<base64>: replace it with `channel set NAME --rotate-secret`")]
    BadSecret,
}

/// The `webhook-signature` header value for one delivery.
pub fn signature(
    secret: &SecretString,
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignError> {
    let encoded = secret
        .expose_secret()
        .strip_prefix("whsec_")
        .ok_or(SignError::BadSecret)?;
    let key = Zeroizing::new(B64.decode(encoded).map_err(|_| SignError::BadSecret)?);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignError::BadSecret)?;
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_specification_test_vector() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rejects_malformed_secrets() {
        for bad in ["MfKQ9r8GKYqr", "whsec_***"] {
            assert_eq!(
                signature(&SecretString::from(bad), "m", 1, b"{}"),
                Err(SignError::BadSecret)
            );
        }
    }
}

//! Secrets: plain values that never print, Argon2id hashes of them, and a verifier that pays
//! the Argon2id cost once per secret rather than once per request.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::{hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// A plain secret (client secret, password). `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    #[must_use]
    pub const fn new(value: String) -> Self {
        Self(value)
    }

    /// A fresh random secret: 256 bits, base64url.
    #[must_use]
    pub fn generate() -> Self {
        Self(random_token())
    }

    /// The value itself; use only where it must be compared or shown once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// 32 random bytes.
#[must_use]
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    // aws-lc's system RNG does not fail on supported platforms; an all-zero token would be
    // caught by no one, so a failure here must stop the process rather than continue.
    #[allow(clippy::expect_used)]
    rand::fill(&mut bytes).expect("the system random number generator works");
    bytes
}

/// 32 random bytes, base64url without padding (43 characters).
#[must_use]
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// The Argon2id parameters for new hashes: OWASP's recommended minimum (19 MiB, 2 passes).
fn argon2() -> Argon2<'static> {
    // The default parameters are valid by construction.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// An Argon2id hash in PHC string form (`$argon2id$v=19$m=…`). `Debug` shows only the
/// algorithm.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(Arc<str>);

impl SecretHash {
    /// Hashes a secret with a fresh random salt.
    #[must_use]
    pub fn hash(secret: &str) -> Self {
        let mut salt = [0u8; 16];
        #[allow(clippy::expect_used)]
        rand::fill(&mut salt).expect("the system random number generator works");
        #[allow(clippy::expect_used)]
        let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
        #[allow(clippy::expect_used)]
        let hash = argon2()
            .hash_password(secret.as_bytes(), &salt)
            .expect("default Argon2id parameters hash any input");
        Self(Arc::from(hash.to_string()))
    }

    /// Checks that `text` is an Argon2id PHC string.
    ///
    /// # Errors
    ///
    /// A sentence saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hash =
            PasswordHash::new(text).map_err(|error| format!("not a PHC hash string ({error})"))?;
        if hash.algorithm.as_str() != "argon2id" {
            return Err(format!(
                "`{}` hashes are not accepted; use Argon2id (`token-service hash-secret`)",
                hash.algorithm
            ));
        }
        if hash.hash.is_none() || hash.salt.is_none() {
            return Err("the hash string has no salt or no hash".to_owned());
        }
        Params::try_from(&hash).map_err(|error| format!("bad Argon2 parameters ({error})"))?;
        Ok(Self(Arc::from(text)))
    }

    /// The PHC string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Verifies `secret` against the hash (slow: Argon2id; constant-time comparison inside).
    #[must_use]
    pub fn verify(&self, secret: &str) -> bool {
        PasswordHash::new(&self.0)
            .is_ok_and(|hash| argon2().verify_password(secret.as_bytes(), &hash).is_ok())
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretHash(argon2id)")
    }
}

/// Verifies presented secrets against their hashes, remembering (as a keyed MAC under a
/// per-process random key, never the secret itself) which secret last matched each hash, so
/// that a client presenting its right secret pays the Argon2id cost once, not per request.
///
/// Wrong secrets always take the slow path; at most `max_concurrent` run at once, so a flood of
/// bad credentials queues instead of taking every core.
#[derive(Clone)]
pub struct SecretVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    key: hmac::Key,
    /// PHC string → MAC of the secret that matched it.
    matched: moka::sync::Cache<Arc<str>, [u8; 32]>,
    slow: Semaphore,
}

impl fmt::Debug for SecretVerifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SecretVerifier")
            .field("remembered", &self.inner.matched.entry_count())
            .finish_non_exhaustive()
    }
}

impl SecretVerifier {
    /// A verifier running at most `max_concurrent` Argon2id checks at once.
    #[must_use]
    pub fn new(max_concurrent: usize) -> Self {
        let mut key = [0u8; 32];
        #[allow(clippy::expect_used)]
        rand::fill(&mut key).expect("the system random number generator works");
        Self {
            inner: Arc::new(VerifierInner {
                key: hmac::Key::new(hmac::HMAC_SHA256, &key),
                matched: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_idle(std::time::Duration::from_secs(3600))
                    .build(),
                slow: Semaphore::new(max_concurrent.max(1)),
            }),
        }
    }

    fn mac(&self, secret: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.inner.key, secret.as_bytes());
        let mut mac = [0u8; 32];
        mac.copy_from_slice(tag.as_ref());
        mac
    }

    /// Whether `secret` matches `hash`.
    pub async fn verify(&self, hash: &SecretHash, secret: &str) -> bool {
        let mac = self.mac(secret);
        if let Some(known) = self.inner.matched.get(&hash.0)
            && bool::from(known.ct_eq(&mac))
        {
            return true;
        }
        let Ok(_permit) = self.inner.slow.acquire().await else {
            return false;
        };
        let (owned_hash, owned_secret) = (hash.clone(), Secret::new(secret.to_owned()));
        let matches = tokio::task::spawn_blocking(move || owned_hash.verify(owned_secret.expose()))
            .await
            .unwrap_or(false);
        if matches {
            self.inner.matched.insert(Arc::clone(&hash.0), mac);
        }
        matches
    }
}

/// SHA-256 of a token, the only form in which the store keeps it.
#[must_use]
pub fn token_digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let hash = SecretHash::hash("hunter2");
        assert!(!format!("{hash:?}").contains("argon2id$"));
    }

    #[test]
    fn hash_verifies_only_its_secret() {
        let hash = SecretHash::hash("right");
        assert!(hash.as_str().starts_with("$argon2id$v=19$"));
        assert!(hash.verify("right"));
        assert!(!hash.verify("wrong"));
        assert!(!hash.verify(""));
    }

    #[test]
    fn parse_accepts_only_argon2id() {
        let hash = SecretHash::hash("x");
        assert!(SecretHash::parse(hash.as_str()).is_ok());
        assert!(SecretHash::parse("plain").is_err());
        let argon2i = hash.as_str().replacen("argon2id", "argon2i", 1);
        assert!(SecretHash::parse(&argon2i).is_err());
    }

    #[test]
    fn generated_secrets_are_256_bit_and_distinct() {
        let (a, b) = (Secret::generate(), Secret::generate());
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn verifier_remembers_only_the_matching_secret() {
        let verifier = SecretVerifier::new(1);
        let hash = SecretHash::hash("right");
        assert!(!verifier.verify(&hash, "wrong").await);
        assert_eq!(verifier.inner.matched.get(&hash.0), None);
        assert!(verifier.verify(&hash, "right").await);
        assert!(verifier.inner.matched.get(&hash.0).is_some());
        // The fast path still refuses a different secret.
        assert!(!verifier.verify(&hash, "wrong").await);
        assert!(verifier.verify(&hash, "right").await);
    }
}

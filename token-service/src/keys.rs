//! Signing keys: generation, the JWS signature, the public JWK, and the key ring that decides
//! which key signs and which are published.
//!
//! Rotation: a new key is *announced* (published, not yet signing) from its creation until
//! `activates_at`; from then on it signs, and the key it supersedes stays published until
//! every token it signed has expired (`superseded_at + longest token lifetime`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::sealing::{Sealed, Sealer, SealingError, signing_key_label};

/// The algorithms the service signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlgorithm {
    /// The JOSE `alg` name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm for a JOSE `alg` name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

/// A key that could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Key generation failed in the crypto library.
    #[error("could not generate a {0} key")]
    Generate(&'static str),
    /// A stored key is not a valid PKCS#8 key of its algorithm.
    #[error("stored key `{kid}` is not a valid {algorithm} key: {reason}")]
    Load {
        /// The key id.
        kid: String,
        /// Its recorded algorithm.
        algorithm: String,
        /// What the crypto library said.
        reason: String,
    },
    /// A stored key cannot be decrypted.
    #[error(transparent)]
    Sealed(#[from] SealingError),
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key with its `kid`.
pub struct SigningKey {
    kid: String,
    algorithm: KeyAlgorithm,
    pair: Pair,
    jwk: Value,
    verifier: UnparsedPublicKey<Vec<u8>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a key; returns it with its PKCS#8 encoding for the store.
    ///
    /// # Errors
    ///
    /// [`KeyError::Generate`] if the crypto library fails.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<(Self, Vec<u8>), KeyError> {
        let failed = |_| KeyError::Generate(algorithm.as_str());
        let pkcs8 = match algorithm {
            KeyAlgorithm::Rs256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|pair| pair.as_der())
                .map(|der| der.as_ref().to_vec())
                .map_err(failed)?,
            KeyAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|pair| pair.to_pkcs8v1())
                .map(|document| document.as_ref().to_vec())
                .map_err(failed)?,
            KeyAlgorithm::EdDsa => Ed25519KeyPair::generate()
                .and_then(|pair| pair.to_pkcs8v1())
                .map(|document| document.as_ref().to_vec())
                .map_err(failed)?,
        };
        let kid = crate::secret::random_token()[..22].to_owned();
        let key = Self::load(&kid, algorithm.as_str(), &pkcs8)?;
        Ok((key, pkcs8))
    }

    /// Loads a stored key.
    ///
    /// # Errors
    ///
    /// [`KeyError::Load`] for an unknown algorithm or bytes that are not a key of it.
    pub fn load(kid: &str, algorithm: &str, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let rejected = |reason: String| KeyError::Load {
            kid: kid.to_owned(),
            algorithm: algorithm.to_owned(),
            reason,
        };
        let parsed = KeyAlgorithm::parse(algorithm)
            .ok_or_else(|| rejected("unknown algorithm".to_owned()))?;
        let (pair, jwk, verifier) = match parsed {
            KeyAlgorithm::Rs256 => {
                let pair =
                    RsaKeyPair::from_pkcs8(pkcs8).map_err(|error| rejected(error.to_string()))?;
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                });
                let verifier =
                    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public.as_ref().to_vec());
                (Pair::Rsa(pair), jwk, verifier)
            }
            KeyAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|error| rejected(error.to_string()))?;
                let point = pair.public_key().as_ref().to_vec();
                // Uncompressed SEC1 point: 0x04 ‖ x (32 bytes) ‖ y (32 bytes).
                if point.len() != 65 {
                    return Err(rejected("not an uncompressed P-256 point".to_owned()));
                }
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..]),
                });
                let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
                (Pair::Ec(pair), jwk, verifier)
            }
            KeyAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
                    .map_err(|error| rejected(error.to_string()))?;
                let public = pair.public_key().as_ref().to_vec();
                let jwk = json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(&public),
                });
                let verifier = UnparsedPublicKey::new(&signature::ED25519, public);
                (Pair::Ed(pair), jwk, verifier)
            }
        };
        let mut jwk = jwk;
        if let Some(members) = jwk.as_object_mut() {
            members.insert("kid".into(), kid.into());
            members.insert("alg".into(), parsed.as_str().into());
            members.insert("use".into(), "sig".into());
        }
        Ok(Self {
            kid: kid.to_owned(),
            algorithm: parsed,
            pair,
            jwk,
            verifier,
        })
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    #[must_use]
    pub const fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public JWK (`kty`, key members, `kid`, `alg`, `use: sig`).
    #[must_use]
    pub const fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs `message`.
    ///
    /// # Errors
    ///
    /// Only if the crypto library fails, which it does not for a loaded key.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)?;
                Ok(signature)
            }
            Pair::Ec(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// Whether `signature` is this key's signature over `message`.
    #[must_use]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify(message, signature).is_ok()
    }
}

/// A key as kept in the store: what is needed to rebuild it and to place it in time.
#[derive(Clone)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// JOSE algorithm name.
    pub algorithm: String,
    /// PKCS#8 DER of the private key, as stored: encrypted unless no key is configured.
    pub private_key: Sealed,
    /// Seconds since the epoch when it was created (and first published).
    pub created_at: u64,
    /// Seconds since the epoch from which it signs.
    pub activates_at: u64,
    /// The `kid` of the key it succeeds (`""` for a first key; `None` for keys stored before
    /// successors were recorded). Unique in the store: of instances rotating at once, or
    /// generating a first key at once, exactly one succeeds.
    pub succeeds: Option<String>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("succeeds", &self.succeeds)
            .finish_non_exhaustive()
    }
}

/// Where a key stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Announced,
    /// Signing.
    Active,
    /// Superseded, still published for the tokens it signed.
    Retiring,
    /// No longer published.
    Retired,
}

impl KeyState {
    /// Lower-case name for listings.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Announced => "announced",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
        }
    }
}

/// A loaded key with its timeline.
#[derive(Debug)]
pub struct TimedKey {
    /// The key.
    pub key: SigningKey,
    /// Seconds since the epoch from which it signs.
    pub activates_at: u64,
    /// Seconds since the epoch when a newer key took over, if one has.
    pub superseded_at: Option<u64>,
}

/// Every key of the store, ordered by activation, with the rule for signing and publishing.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<Arc<TimedKey>>,
    /// The longest lifetime of a token a key may have signed.
    retention: Duration,
}

impl KeyRing {
    /// Loads stored keys (any order), decrypting them with `sealer`.
    ///
    /// # Errors
    ///
    /// [`KeyError::Load`] or [`KeyError::Sealed`] for a stored key that cannot be loaded:
    /// better to stop than to silently drop a key that signed live tokens.
    pub fn load(
        stored: &[StoredKey],
        sealer: &Sealer,
        retention: Duration,
    ) -> Result<Self, KeyError> {
        let mut loaded = stored
            .iter()
            .map(|stored| {
                let pkcs8 = sealer.open(&signing_key_label(&stored.kid), &stored.private_key)?;
                SigningKey::load(&stored.kid, &stored.algorithm, &pkcs8)
                    .map(|key| (stored.activates_at, stored.created_at, key))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Every instance orders the same keys the same way, so they agree on the active one.
        loaded.sort_by(|left, right| {
            (left.0, left.1, left.2.kid()).cmp(&(right.0, right.1, right.2.kid()))
        });
        let next_activations: Vec<Option<u64>> = (0..loaded.len())
            .map(|index| loaded.get(index + 1).map(|next| next.0))
            .collect();
        let keys = loaded
            .into_iter()
            .zip(next_activations)
            .map(|((activates_at, _, key), superseded_at)| {
                Arc::new(TimedKey {
                    key,
                    activates_at,
                    superseded_at,
                })
            })
            .collect();
        Ok(Self { keys, retention })
    }

    /// The state of `key` at `now` (seconds since the epoch).
    #[must_use]
    pub fn state(&self, key: &TimedKey, now: u64) -> KeyState {
        if now < key.activates_at {
            return KeyState::Announced;
        }
        match key.superseded_at {
            Some(superseded) if superseded <= now => {
                if now < superseded.saturating_add(self.retention.as_secs()) {
                    KeyState::Retiring
                } else {
                    KeyState::Retired
                }
            }
            _ => KeyState::Active,
        }
    }

    /// The key that signs at `now`: the latest one already activated.
    #[must_use]
    pub fn active(&self, now: u64) -> Option<&Arc<TimedKey>> {
        self.keys.iter().rev().find(|key| key.activates_at <= now)
    }

    /// Every key published at `now` (announced, active, retiring).
    pub fn published(&self, now: u64) -> impl Iterator<Item = &Arc<TimedKey>> {
        self.keys
            .iter()
            .filter(move |key| self.state(key, now) != KeyState::Retired)
    }

    /// A published key by `kid`.
    #[must_use]
    pub fn find(&self, kid: &str, now: u64) -> Option<&Arc<TimedKey>> {
        self.published(now).find(|key| key.key.kid() == kid)
    }

    /// Every key, oldest first.
    #[must_use]
    pub fn all(&self) -> &[Arc<TimedKey>] {
        &self.keys
    }

    /// The JWKS document at `now`.
    #[must_use]
    pub fn jwks(&self, now: u64) -> Value {
        let keys: Vec<&Value> = self
            .published(now)
            .map(|key| key.key.public_jwk())
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(algorithm: KeyAlgorithm, created_at: u64, activates_at: u64) -> StoredKey {
        let (key, pkcs8) = SigningKey::generate(algorithm).unwrap();
        StoredKey {
            kid: key.kid().to_owned(),
            algorithm: algorithm.as_str().to_owned(),
            private_key: Sealed {
                sealed_by: None,
                bytes: pkcs8,
            },
            created_at,
            activates_at,
            succeeds: None,
        }
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_reloads() {
        for algorithm in [
            KeyAlgorithm::Rs256,
            KeyAlgorithm::Es256,
            KeyAlgorithm::EdDsa,
        ] {
            let (key, pkcs8) = SigningKey::generate(algorithm).unwrap();
            let signature = key.sign(b"message").unwrap();
            assert!(key.verify(b"message", &signature), "{algorithm:?}");
            assert!(!key.verify(b"massage", &signature), "{algorithm:?}");
            let reloaded = SigningKey::load(key.kid(), algorithm.as_str(), &pkcs8).unwrap();
            assert!(reloaded.verify(b"message", &signature));
            assert_eq!(reloaded.public_jwk(), key.public_jwk());
        }
    }

    #[test]
    fn jwk_has_public_members_only() {
        for algorithm in [
            KeyAlgorithm::Rs256,
            KeyAlgorithm::Es256,
            KeyAlgorithm::EdDsa,
        ] {
            let (key, _) = SigningKey::generate(algorithm).unwrap();
            let jwk = key.public_jwk().as_object().unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(!jwk.contains_key(private), "{algorithm:?} leaks {private}");
            }
            assert_eq!(jwk["kid"], key.kid());
            assert_eq!(jwk["alg"], algorithm.as_str());
            assert_eq!(jwk["use"], "sig");
        }
    }

    #[test]
    fn stored_garbage_is_refused_naming_the_key() {
        let error = SigningKey::load("k1", "RS256", b"not a key").unwrap_err();
        assert!(error.to_string().contains("k1"));
        assert!(SigningKey::load("k2", "HS256", b"").is_err());
    }

    #[test]
    fn rotation_timeline() {
        let old = stored(KeyAlgorithm::Es256, 0, 0);
        let new = stored(KeyAlgorithm::Es256, 100, 200);
        let ring = KeyRing::load(
            &[new.clone(), old.clone()],
            &Sealer::clear(),
            Duration::from_secs(60),
        )
        .unwrap();
        let kid_at = |now| ring.active(now).unwrap().key.kid().to_owned();
        let published = |now| {
            ring.published(now)
                .map(|key| key.key.kid().to_owned())
                .collect::<Vec<_>>()
        };
        // Before the announced key activates, the old one signs and both are published.
        assert_eq!(kid_at(150), old.kid);
        assert_eq!(published(150), [old.kid.clone(), new.kid.clone()]);
        assert_eq!(ring.state(&ring.all()[1], 150), KeyState::Announced);
        // From activation the new key signs; the old one stays published for the retention.
        assert_eq!(kid_at(200), new.kid);
        assert_eq!(ring.state(&ring.all()[0], 200), KeyState::Retiring);
        assert_eq!(published(259), [old.kid.clone(), new.kid.clone()]);
        // Once every token the old key signed has expired, it is withdrawn.
        assert_eq!(published(260), [new.kid]);
        assert_eq!(ring.state(&ring.all()[0], 260), KeyState::Retired);
        assert!(ring.find(&old.kid, 260).is_none());
    }
}

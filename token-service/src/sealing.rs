//! Secrets at rest: the private signing keys and the secrets every instance shares are stored
//! encrypted (AES-256-GCM) under keys the operator supplies, never in the database itself, so a
//! copy of the database alone yields no usable key.
//!
//! The operator gives a list of keys; the first encrypts, every one decrypts. Rotating without
//! downtime: add the new key second everywhere, then move it first — instances re-encrypt what
//! they find under an older key when they start — and drop the old key once all have restarted.
//! Each ciphertext records the id of the key that made it (a one-way derivation, safe to store)
//! and is bound to the row it belongs to, so it cannot be moved to another.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};

use crate::secret::{Secret, random_bytes};
use crate::store::{Store, StoreError};

/// The shortest key accepted: 32 characters, e.g. `openssl rand -base64 32` (44).
pub const MIN_KEY_CHARS: usize = 32;

/// A secret as stored: encrypted under the key `sealed_by` names, or in clear (`None`).
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The id of the key that encrypted `bytes`; `None` when they are in clear.
    pub sealed_by: Option<String>,
    /// The nonce, ciphertext and tag; or the secret itself when in clear.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Sealed")
            .field("sealed_by", &self.sealed_by)
            .finish_non_exhaustive()
    }
}

/// Why a stored secret could not be read, or a key not used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealingError {
    /// An operator key is too short to be a key.
    #[error(
        "encryption key {position} has {chars} characters; at least {MIN_KEY_CHARS} are needed \
         (e.g. `openssl rand -base64 32`)"
    )]
    KeyTooShort {
        /// Its place in the list, from 1.
        position: usize,
        /// How many characters it has.
        chars: usize,
    },
    /// The same key is listed twice.
    #[error("encryption key {position} repeats an earlier one")]
    RepeatedKey {
        /// Its place in the list, from 1.
        position: usize,
    },
    /// A stored secret is encrypted under a key that is not configured.
    #[error(
        "{what} is encrypted under key `{key_id}`, which is not among the configured encryption \
         keys{hint}"
    )]
    UnknownKey {
        /// The secret (`signing key abc`, `shared secret csrf`).
        what: String,
        /// The id of the key that encrypted it.
        key_id: String,
        /// What the operator may have missed.
        hint: &'static str,
    },
    /// A stored secret does not decrypt under the key it names.
    #[error("{what} does not decrypt under key `{key_id}`: the row was altered or moved")]
    Corrupt {
        /// The secret.
        what: String,
        /// The key it claims.
        key_id: String,
    },
    /// The crypto library failed to encrypt.
    #[error("could not encrypt {what}")]
    Encrypt {
        /// The secret.
        what: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One operator key, ready to use.
struct SealingKey {
    id: String,
    key: RandomizedNonceKey,
}

/// Encrypts secrets for the store and decrypts them from it.
pub struct Sealer {
    /// The first key encrypts; all of them decrypt. Empty: secrets are kept in clear.
    keys: Vec<SealingKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|key| key.id.as_str()).collect();
        formatter
            .debug_struct("Sealer")
            .field("key_ids", &ids)
            .finish()
    }
}

/// HKDF output lengths.
struct Length(usize);

impl KeyType for Length {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(salt: &Salt, secret: &str, info: &[u8], out: &mut [u8]) {
    #[allow(clippy::expect_used)]
    salt.extract(secret.as_bytes())
        .expand(&[info], Length(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 yields up to 8160 bytes");
}

impl Sealer {
    /// Secrets kept in clear: what the service does when the operator gives no key.
    #[must_use]
    pub fn clear() -> Self {
        Self { keys: Vec::new() }
    }

    /// The operator's keys, the first of which encrypts.
    ///
    /// # Errors
    ///
    /// [`SealingError::KeyTooShort`] or [`SealingError::RepeatedKey`].
    pub fn new(keys: &[Secret]) -> Result<Self, SealingError> {
        let salt = Salt::new(HKDF_SHA256, b"scopegate secrets at rest v1");
        let mut sealing_keys: Vec<SealingKey> = Vec::with_capacity(keys.len());
        for (index, secret) in keys.iter().enumerate() {
            let position = index + 1;
            let chars = secret.expose().chars().count();
            if chars < MIN_KEY_CHARS {
                return Err(SealingError::KeyTooShort { position, chars });
            }
            let mut key_bytes = [0u8; 32];
            derive(&salt, secret.expose(), b"aes-256-gcm key", &mut key_bytes);
            let mut id_bytes = [0u8; 8];
            derive(&salt, secret.expose(), b"key id", &mut id_bytes);
            let id: String = id_bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            if sealing_keys.iter().any(|known| known.id == id) {
                return Err(SealingError::RepeatedKey { position });
            }
            #[allow(clippy::expect_used)]
            let key = RandomizedNonceKey::new(&AES_256_GCM, &key_bytes)
                .expect("a 32-byte key is an AES-256 key");
            sealing_keys.push(SealingKey { id, key });
        }
        Ok(Self { keys: sealing_keys })
    }

    /// Whether secrets are stored in clear (no key configured).
    #[must_use]
    pub fn is_clear(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of the key that encrypts, if any.
    #[must_use]
    pub fn current_key_id(&self) -> Option<&str> {
        self.keys.first().map(|key| key.id.as_str())
    }

    /// `secret` as it is to be stored for `what` (the row it belongs to, bound into the
    /// ciphertext so that it cannot be moved to another).
    ///
    /// # Errors
    ///
    /// [`SealingError::Encrypt`] if the crypto library fails.
    pub fn seal(&self, what: &str, secret: &[u8]) -> Result<Sealed, SealingError> {
        let Some(current) = self.keys.first() else {
            return Ok(Sealed {
                sealed_by: None,
                bytes: secret.to_vec(),
            });
        };
        let mut in_out = secret.to_vec();
        let nonce = current
            .key
            .seal_in_place_append_tag(Aad::from(what.as_bytes()), &mut in_out)
            .map_err(|_| SealingError::Encrypt {
                what: what.to_owned(),
            })?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + in_out.len());
        bytes.extend_from_slice(nonce.as_ref());
        bytes.extend_from_slice(&in_out);
        Ok(Sealed {
            sealed_by: Some(current.id.clone()),
            bytes,
        })
    }

    /// The secret stored for `what`.
    ///
    /// # Errors
    ///
    /// [`SealingError::UnknownKey`] when its key is not configured, [`SealingError::Corrupt`]
    /// when it does not decrypt (altered, or moved from another row).
    pub fn open(&self, what: &str, sealed: &Sealed) -> Result<Vec<u8>, SealingError> {
        let Some(key_id) = &sealed.sealed_by else {
            return Ok(sealed.bytes.clone());
        };
        let Some(key) = self.keys.iter().find(|key| key.id == *key_id) else {
            return Err(SealingError::UnknownKey {
                what: what.to_owned(),
                key_id: key_id.clone(),
                hint: if self.keys.is_empty() {
                    " (none is: set SCOPEGATE_ENCRYPTION_KEYS or `encryption_keys_file`)"
                } else {
                    " (keep a retired key listed after the current one until every instance \
                     has re-encrypted under the new one)"
                },
            });
        };
        let corrupt = || SealingError::Corrupt {
            what: what.to_owned(),
            key_id: key_id.clone(),
        };
        if sealed.bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut in_out = ciphertext.to_vec();
        let length = key
            .key
            .open_in_place(nonce, Aad::from(what.as_bytes()), &mut in_out)
            .map_err(|_| corrupt())?
            .len();
        in_out.truncate(length);
        Ok(in_out)
    }

    /// Whether `sealed` should be encrypted again: it is in clear, or under a key that no longer
    /// encrypts. Always `false` without keys (there is nothing to encrypt under).
    #[must_use]
    pub fn is_outdated(&self, sealed: &Sealed) -> bool {
        self.current_key_id()
            .is_some_and(|current| sealed.sealed_by.as_deref() != Some(current))
    }
}

/// What a signing key is called when it is sealed (bound into its ciphertext).
#[must_use]
pub fn signing_key_label(kid: &str) -> String {
    format!("signing key {kid}")
}

/// What a shared secret is called when it is sealed (bound into its ciphertext).
#[must_use]
pub fn shared_secret_label(name: &str) -> String {
    format!("shared secret {name}")
}

/// The secret `name` every instance shares (the CSRF key), created by whichever asks first.
///
/// # Errors
///
/// [`SealingError`] if the store fails or the stored secret cannot be decrypted.
pub async fn shared_secret(
    store: &dyn Store,
    sealer: &Sealer,
    name: &str,
    now: u64,
) -> Result<Vec<u8>, SealingError> {
    let label = shared_secret_label(name);
    let offer = sealer.seal(&label, &random_bytes())?;
    let stored = store.server_secret(name, &offer, now).await?;
    sealer.open(&label, &stored)
}

/// Encrypts under the current key every stored secret found in clear or under an older key,
/// so that the older key can be retired; returns how many this call changed. Safe with several
/// instances at once: each row is replaced only if it is still as read.
///
/// # Errors
///
/// [`SealingError`] if the store fails or a secret cannot be decrypted with the keys given —
/// the service must not start then.
pub async fn reseal_outdated(store: &dyn Store, sealer: &Sealer) -> Result<usize, SealingError> {
    // Everything is decrypted before anything is written: a secret the keys cannot read
    // stops the start with the store as it was.
    let mut keys = Vec::new();
    for key in store.list_keys().await? {
        let label = signing_key_label(&key.kid);
        let secret = sealer.open(&label, &key.private_key)?;
        keys.push((key, label, secret));
    }
    let mut shared = Vec::new();
    for (name, stored) in store.server_secrets().await? {
        let label = shared_secret_label(&name);
        let secret = sealer.open(&label, &stored)?;
        shared.push((name, stored, label, secret));
    }
    let mut changed = 0;
    for (key, label, secret) in keys {
        if sealer.is_outdated(&key.private_key) {
            let sealed = sealer.seal(&label, &secret)?;
            let from = key.private_key.sealed_by.as_deref();
            changed += usize::from(store.reseal_key(&key.kid, from, &sealed).await?);
        }
    }
    for (name, stored, label, secret) in shared {
        if sealer.is_outdated(&stored) {
            let sealed = sealer.seal(&label, &secret)?;
            let from = stored.sealed_by.as_deref();
            changed += usize::from(store.reseal_server_secret(&name, from, &sealed).await?);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(keys: &[&str]) -> Sealer {
        let keys: Vec<Secret> = keys
            .iter()
            .map(|key| Secret::new((*key).to_owned()))
            .collect();
        Sealer::new(&keys).unwrap()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_and_label() {
        let a = sealer(&[A]);
        let sealed = a.seal("signing key 1", b"private").unwrap();
        assert_eq!(sealed.sealed_by.as_deref(), a.current_key_id());
        assert!(!sealed.bytes.windows(7).any(|window| window == b"private"));
        assert_eq!(a.open("signing key 1", &sealed).unwrap(), b"private");
        assert!(matches!(
            a.open("signing key 2", &sealed),
            Err(SealingError::Corrupt { .. })
        ));
        let mut altered = sealed.clone();
        *altered.bytes.last_mut().unwrap() ^= 1;
        assert!(matches!(
            a.open("signing key 1", &altered),
            Err(SealingError::Corrupt { .. })
        ));
        assert!(matches!(
            sealer(&[B]).open("signing key 1", &sealed),
            Err(SealingError::UnknownKey { .. })
        ));
        assert!(matches!(
            Sealer::clear().open("signing key 1", &sealed),
            Err(SealingError::UnknownKey { .. })
        ));
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = sealer(&[A]).seal("x", b"secret").unwrap();
        let rotated = sealer(&[B, A]);
        assert_eq!(rotated.open("x", &old).unwrap(), b"secret");
        assert!(rotated.is_outdated(&old));
        let new = rotated.seal("x", b"secret").unwrap();
        assert!(!rotated.is_outdated(&new));
        assert_eq!(new.sealed_by.as_deref(), sealer(&[B]).current_key_id());
        assert_eq!(sealer(&[B]).open("x", &new).unwrap(), b"secret");
    }

    #[test]
    fn without_keys_secrets_stay_in_clear() {
        let clear = Sealer::clear();
        let sealed = clear.seal("x", b"secret").unwrap();
        assert_eq!(sealed.sealed_by, None);
        assert_eq!(clear.open("x", &sealed).unwrap(), b"secret");
        assert!(!clear.is_outdated(&sealed));
        assert!(sealer(&[A]).is_outdated(&sealed));
        assert_eq!(sealer(&[A]).open("x", &sealed).unwrap(), b"secret");
    }

    #[test]
    fn short_and_repeated_keys_are_refused() {
        assert!(matches!(
            Sealer::new(&[Secret::new("short".to_owned())]),
            Err(SealingError::KeyTooShort {
                position: 1,
                chars: 5
            })
        ));
        assert!(matches!(
            Sealer::new(&[Secret::new(A.to_owned()), Secret::new(A.to_owned())]),
            Err(SealingError::RepeatedKey { position: 2 })
        ));
    }

    #[test]
    fn debug_output_shows_key_ids_only() {
        let shown = format!("{:?}", sealer(&[A]));
        assert!(!shown.contains(A), "{shown}");
        let sealed = sealer(&[A]).seal("x", b"secret").unwrap();
        assert!(!format!("{sealed:?}").contains("bytes"));
    }
}

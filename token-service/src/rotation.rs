//! Signing key rotation. Every key after the first names the key it succeeds, and the store
//! keeps that name unique: when several instances decide at once that a rotation is due (or
//! start at once on an empty store), exactly one key is added and all of them load it.
//!
//! A successor is published from the moment it is stored and signs from `activates_at`, at
//! least `announce_period` later, so validators that cache the JWKS for `jwks_max_age` know it
//! before any token carries it; its predecessor stays published until every token it signed
//! has expired (`KeyRing`).

use crate::keys::{KeyAlgorithm, KeyError, KeyRing, SigningKey, StoredKey};
use crate::sealing::{Sealer, SealingError, signing_key_label};
use crate::store::{Store, StoreError};

/// A key added by [`add_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedKey {
    /// Its `kid`.
    pub kid: String,
    /// Seconds since the epoch from which it signs.
    pub activates_at: u64,
}

/// Why a key could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No key could be generated.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key could not be encrypted for the store.
    #[error(transparent)]
    Sealing(#[from] SealingError),
}

/// Generates a key that succeeds `predecessor` (`None` for the first key) and stores it,
/// encrypted by `sealer`.
/// `Ok(None)`: another instance added the successor first (nothing changed here).
///
/// # Errors
///
/// [`RotationError`] if no key can be generated or the store fails.
pub async fn add_key(
    store: &dyn Store,
    sealer: &Sealer,
    algorithm: KeyAlgorithm,
    predecessor: Option<&str>,
    created_at: u64,
    activates_at: u64,
) -> Result<Option<AddedKey>, RotationError> {
    let (key, pkcs8) = SigningKey::generate(algorithm)?;
    let stored = StoredKey {
        kid: key.kid().to_owned(),
        algorithm: key.algorithm().as_str().to_owned(),
        private_key: sealer.seal(&signing_key_label(key.kid()), &pkcs8)?,
        created_at,
        activates_at,
        succeeds: Some(predecessor.unwrap_or_default().to_owned()),
    };
    match store.insert_key(&stored).await {
        Ok(()) => Ok(Some(AddedKey {
            kid: stored.kid,
            activates_at,
        })),
        Err(StoreError::Duplicate(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// When the successor of `ring`'s newest key should start signing, if it is time to announce
/// it now: the newest key signs for `rotation_period`, and its successor is announced
/// `announce_period` before that (later only if this instance was not running then).
#[must_use]
pub fn due_activation(
    ring: &KeyRing,
    now: u64,
    rotation_period: u64,
    announce_period: u64,
) -> Option<u64> {
    let newest = ring.all().last()?;
    let takes_over = newest.activates_at.saturating_add(rotation_period);
    (now.saturating_add(announce_period) >= takes_over)
        .then(|| takes_over.max(now.saturating_add(announce_period)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::SqlStore;
    use crate::store::prelude::*;

    async fn ring(store: &SqlStore) -> KeyRing {
        KeyRing::load(
            &store.list_keys().await.unwrap(),
            &Sealer::clear(),
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn rotation_is_due_one_announce_period_before_the_newest_key_has_signed_its_period() {
        let store = SqlStore::sqlite("sqlite::memory:").await.unwrap();
        let first = add_key(
            &store,
            &Sealer::clear(),
            KeyAlgorithm::Es256,
            None,
            1_000,
            1_000,
        )
        .await
        .unwrap()
        .unwrap();
        let keys = ring(&store).await;
        // Period 100 s, announce 10 s: due from 1 090, signing from 1 100.
        assert_eq!(due_activation(&keys, 1_089, 100, 10), None);
        assert_eq!(due_activation(&keys, 1_090, 100, 10), Some(1_100));
        // An instance that was down at the due time announces late, never shortens the notice.
        assert_eq!(due_activation(&keys, 1_500, 100, 10), Some(1_510));
        let second = add_key(
            &store,
            &Sealer::clear(),
            KeyAlgorithm::Es256,
            Some(&first.kid),
            1_090,
            1_100,
        )
        .await
        .unwrap()
        .unwrap();
        let keys = ring(&store).await;
        assert_eq!(keys.all().last().unwrap().key.kid(), second.kid);
        assert_eq!(due_activation(&keys, 1_095, 100, 10), None);
        assert_eq!(due_activation(&keys, 1_190, 100, 10), Some(1_200));
    }

    #[tokio::test]
    async fn of_concurrent_rotations_exactly_one_adds_a_key() {
        let store = std::sync::Arc::new(SqlStore::sqlite("sqlite::memory:").await.unwrap());
        let first = add_key(&*store, &Sealer::clear(), KeyAlgorithm::Es256, None, 1, 1)
            .await
            .unwrap()
            .unwrap();
        // A second first key (another instance starting on the same empty store) is refused.
        assert_eq!(
            add_key(&*store, &Sealer::clear(), KeyAlgorithm::Es256, None, 1, 1)
                .await
                .unwrap(),
            None
        );
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (store, predecessor) = (std::sync::Arc::clone(&store), first.kid.clone());
            attempts.spawn(async move {
                add_key(
                    &*store,
                    &Sealer::clear(),
                    KeyAlgorithm::Es256,
                    Some(&predecessor),
                    2,
                    3,
                )
                .await
            });
        }
        let mut added = 0;
        while let Some(result) = attempts.join_next().await {
            if result.unwrap().unwrap().is_some() {
                added += 1;
            }
        }
        assert_eq!(added, 1);
        assert_eq!(store.list_keys().await.unwrap().len(), 2);
    }
}

//! The verified-token cache: a token whose signature and claims checked out once is not
//! verified cryptographically again until it expires, or until its key leaves the key set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use moka::Expiry;
use moka::sync::Cache;

use crate::principal::Principal;

/// SHA-256 of the token: the cache never holds a usable token.
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn token_hash(token: &str) -> TokenHash {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

#[derive(Clone)]
pub(crate) struct Verified {
    pub(crate) principal: Arc<Principal>,
    /// The key that verified the token; the entry is void once that key is withdrawn.
    pub(crate) key_fingerprint: u64,
    /// How long the entry may live in memory: until the token's `exp`.
    lifetime: Duration,
}

struct UntilExpiry;

impl Expiry<TokenHash, Verified> for UntilExpiry {
    fn expire_after_create(&self, _: &TokenHash, value: &Verified, _: Instant) -> Option<Duration> {
        Some(value.lifetime)
    }
}

/// Bounded; `None` when switched off.
#[derive(Clone)]
pub(crate) struct VerifiedTokens(Option<Cache<TokenHash, Verified>>);

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(cache) => write!(formatter, "VerifiedTokens({} entries)", cache.entry_count()),
            None => formatter.write_str("VerifiedTokens(off)"),
        }
    }
}

impl VerifiedTokens {
    pub(crate) fn new(capacity: u64) -> Self {
        Self((capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .build()
        }))
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.as_ref().map_or(0, |cache| {
            cache.run_pending_tasks();
            cache.entry_count()
        })
    }

    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Verified> {
        self.0.as_ref()?.get(hash)
    }

    pub(crate) fn insert(
        &self,
        hash: TokenHash,
        principal: Arc<Principal>,
        key_fingerprint: u64,
        now: Duration,
    ) {
        let Some(cache) = &self.0 else { return };
        let lifetime = principal.expires_at.unwrap_or_default().saturating_sub(now);
        if !lifetime.is_zero() {
            cache.insert(
                hash,
                Verified {
                    principal,
                    key_fingerprint,
                    lifetime,
                },
            );
        }
    }
}

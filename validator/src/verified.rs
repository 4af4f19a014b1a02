//! The verified-token cache: a token whose signature and claims checked out once is not
//! verified cryptographically again until it expires, or until its key leaves the key set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use moka::Expiry;
use moka::sync::Cache;

use crate::metrics::VerifiedCacheMetrics;
use crate::principal::Principal;

/// The cache key: SHA-256 of the token's signature segment.
///
/// Hashing 86 bytes (an ES256 signature) instead of the whole token keeps the hot path cheap;
/// the entry's principal keeps the signed part (`header.payload`, which carries nothing
/// secret: it is the principal's claim set, as received) and a hit requires it to match byte
/// for byte. A hit thus
/// still means *this exact token* — the same signature by SHA-256's collision resistance, the
/// same signed part by comparison — and the cache still never holds a usable token, since the
/// signature itself is never stored.
pub(crate) type TokenHash = [u8; 32];

/// The key for `token` (a compact JWS: the text after its last `.` is the signature).
pub(crate) fn token_hash(token: &str) -> TokenHash {
    let signature = token
        .rsplit_once('.')
        .map_or(token, |(_, signature)| signature);
    let digest = digest::digest(&digest::SHA256, signature.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// `header.payload` of a compact JWS.
pub(crate) fn signed_part(token: &str) -> &str {
    token.rsplit_once('.').map_or("", |(signed, _)| signed)
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

/// Keys are SHA-256 digests already: their first eight bytes are as good a table hash as
/// hashing them again. Only verified tokens become keys, so no one can fill a bucket on purpose.
#[derive(Clone, Copy, Default)]
pub(crate) struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a `usize`) then its bytes: keep the digest's bytes.
        if let Some(first) = bytes.first_chunk::<8>()
            && bytes.len() >= 32
        {
            self.0 = u64::from_le_bytes(*first);
        }
    }
}

pub(crate) type DigestHash = std::hash::BuildHasherDefault<DigestHasher>;

/// Bounded; no cache when switched off.
#[derive(Clone)]
pub(crate) struct VerifiedTokens {
    cache: Option<Cache<TokenHash, Verified, DigestHash>>,
    metrics: VerifiedCacheMetrics,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cache {
            Some(cache) => write!(formatter, "VerifiedTokens({} entries)", cache.entry_count()),
            None => formatter.write_str("VerifiedTokens(off)"),
        }
    }
}

impl VerifiedTokens {
    pub(crate) fn new(capacity: u64, metrics: VerifiedCacheMetrics) -> Self {
        let cache = (capacity > 0).then(|| {
            // Every way out (expiry, eviction, removal, replacement) passes the listener, which
            // keeps the entry gauge exact without asking the cache to count.
            let entries = Arc::clone(&metrics.entries);
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .eviction_listener(move |_, _, _| entries.removed())
                .build_with_hasher(DigestHash::default())
        });
        Self { cache, metrics }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// A token answered from the cache.
    pub(crate) fn count_hit(&self) {
        self.metrics.hit.increment(1);
    }

    /// A token verified in full, the cache on.
    pub(crate) fn count_miss(&self) {
        self.metrics.miss.increment(1);
    }

    pub(crate) fn len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |cache| {
            cache.run_pending_tasks();
            cache.entry_count()
        })
    }

    /// The entry for `token` (whose key is `hash`), only if it was made for this very token.
    pub(crate) fn get(&self, hash: &TokenHash, token: &str) -> Option<Verified> {
        self.cache
            .as_ref()?
            .get(hash)
            .filter(|hit| hit.principal.claims.signed_part() == Some(signed_part(token)))
    }

    /// Forgets the entry for a token that must not be answered from the cache again.
    pub(crate) fn remove(&self, hash: &TokenHash) {
        if let Some(cache) = &self.cache {
            cache.invalidate(hash);
        }
    }

    pub(crate) fn insert(
        &self,
        hash: TokenHash,
        principal: Arc<Principal>,
        key_fingerprint: u64,
        now: Duration,
    ) {
        let Some(cache) = &self.cache else { return };
        let lifetime = principal.expires_at.unwrap_or_default().saturating_sub(now);
        if !lifetime.is_zero() {
            // Counted before it is in: its removal can then never be counted first.
            self.metrics.entries.added();
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

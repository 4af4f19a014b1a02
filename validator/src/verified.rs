//! The verified-token cache: a token whose signature and claims checked out once is not
//! verified cryptographically again until it expires, or until its key leaves the key set.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use quick_cache::UnitWeighter;
use quick_cache::sync::{Cache, DefaultLifecycle};

use crate::metrics::VerifiedCacheMetrics;
use crate::principal::Principal;

/// The cache key: SHA-256 of the token's signature segment.
///
/// Hashing 86 bytes (an ES256 signature) instead of the whole token keeps the hot path cheap;
/// the entry's principal keeps what the signed part (`header.payload`) says, which carries
/// nothing secret: the header segment (shared between tokens that have the same one) and the
/// decoded claim set, whose encoding is the payload segment (decoding is strict: a payload has
/// one spelling). A hit requires `header.payload` to match them byte for byte. A hit thus
/// still means *this exact token* — the same signature by SHA-256's collision resistance, the
/// same signed part by comparison — and the cache still never holds a usable token, since the
/// signature itself is never stored.
pub(crate) type TokenHash = [u8; 32];

/// The key for `token` (a compact JWS: the text after its last `.` is the signature).
pub(crate) fn token_hash(token: &str) -> TokenHash {
    let signature = last_dot(token).map_or(token, |dot| &token[dot + 1..]);
    let digest = digest::digest(&digest::SHA256, signature.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// `header.payload` of a compact JWS.
fn signed_part(token: &str) -> &str {
    last_dot(token).map_or("", |dot| &token[..dot])
}

/// Where the signature starts, found twice on every warm validation: `memchr` reads 32 bytes
/// at a time where `str::rsplit_once` reads one (3 % of a warm ES256 validation).
fn last_dot(token: &str) -> Option<usize> {
    memchr::memrchr(b'.', token.as_bytes())
}

#[derive(Clone)]
pub(crate) struct Verified {
    pub(crate) principal: Arc<Principal>,
    /// The key that verified the token; the entry is void once that key is withdrawn.
    pub(crate) key_fingerprint: u64,
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

/// A cache whose reads take one shard's read lock and clone an `Arc` — no read log, no
/// timestamps written, no background work — and whose entry costs little beyond its key and
/// value (quick_cache, S3-FIFO eviction). Entries leave when evicted for room, when found
/// expired or revoked, or with the validator. Bounded; no cache when switched off.
#[derive(Clone)]
pub(crate) struct VerifiedTokens {
    cache: Option<Arc<Cache<TokenHash, Verified, UnitWeighter, DigestHash>>>,
    metrics: VerifiedCacheMetrics,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cache {
            Some(cache) => write!(formatter, "VerifiedTokens({} entries)", cache.len()),
            None => formatter.write_str("VerifiedTokens(off)"),
        }
    }
}

/// The table starts this small and grows with use: a large capacity costs nothing up front.
const INITIAL_ENTRIES: u64 = 1024;

impl VerifiedTokens {
    pub(crate) fn new(capacity: u64, metrics: VerifiedCacheMetrics) -> Self {
        let cache = (capacity > 0).then(|| {
            Arc::new(Cache::with(
                usize::try_from(capacity.min(INITIAL_ENTRIES)).unwrap_or(usize::MAX),
                capacity,
                UnitWeighter,
                DigestHash::default(),
                DefaultLifecycle::default(),
            ))
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
        self.cache.as_ref().map_or(0, |cache| cache.len() as u64)
    }

    /// The entry for `token` (whose key is `hash`), only if it was made for this very token.
    pub(crate) fn get(&self, hash: &TokenHash, token: &str) -> Option<Verified> {
        self.cache
            .as_ref()?
            .get(hash)
            .filter(|hit| hit.principal.claims.is_signed_part(signed_part(token)))
    }

    /// Forgets the entry for a token that must not be answered from the cache again.
    pub(crate) fn remove(&self, hash: &TokenHash) {
        if let Some(cache) = &self.cache {
            cache.remove(hash);
            self.metrics.entries.set(cache.len());
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
        if principal.expires_at.get().is_some_and(|exp| exp > now) {
            cache.insert(
                hash,
                Verified {
                    principal,
                    key_fingerprint,
                },
            );
            // Set, not counted: an insert may evict others, or replace the same token's entry.
            self.metrics.entries.set(cache.len());
        }
    }
}

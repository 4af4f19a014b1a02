//! A proof is good once (RFC 9449 §11.1): the `jti`s seen within the window, in memory.

use std::fmt;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use moka::Expiry;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::{DpopError, DpopProof};
use crate::error::BuildError;
use crate::verified::DigestHash;

/// The `jti`s of accepted proofs, each kept while a proof with its `iat` could still pass the
/// window check — at most twice the window, since `iat` may be up to the window ahead.
///
/// Entries are keyed by SHA-256 of the proof key's thumbprint and the `jti` together: a client
/// choosing its ids cannot use up another client's, and the memory per entry is fixed whatever
/// the id's length. Check and insert are one atomic step, so two copies of a proof racing each
/// other cannot both pass.
///
/// ```
/// use std::time::Duration;
/// use scopegate_validator::dpop::ReplayCache;
///
/// let seen = ReplayCache::new(100_000, Duration::from_secs(60))?;
/// assert!(seen.is_empty());
/// # Ok::<(), scopegate_validator::BuildError>(())
/// ```
///
/// # Security
/// The cache is bounded: once full, the least recently seen ids are dropped first, and a proof
/// whose id was dropped could be replayed within its window. Size it for the peak number of
/// proofs accepted in twice the window (100 000 entries take a few MiB). It lives in one
/// process: instances behind a load balancer each keep their own, so a replay sent to another
/// instance passes unless server nonces (§9) narrow the window or the balancer is sticky.
#[derive(Clone)]
pub struct ReplayCache {
    seen: Cache<[u8; 32], Duration, DigestHash>,
    window: Duration,
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ReplayCache")
            .field("entries", &self.seen.entry_count())
            .field("window", &self.window)
            .finish()
    }
}

/// Each entry lives for the lifetime it was stored with.
struct StoredLifetime;

impl Expiry<[u8; 32], Duration> for StoredLifetime {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        lifetime: &Duration,
        _: Instant,
    ) -> Option<Duration> {
        Some(*lifetime)
    }
}

impl ReplayCache {
    /// A cache for at most `capacity` ids of proofs accepted with an `iat` within `window` of
    /// now, either way.
    ///
    /// # Errors
    /// [`BuildError`] (field `dpop_replay_capacity`) for a capacity of 0.
    pub fn new(capacity: u64, window: Duration) -> Result<Self, BuildError> {
        if capacity == 0 {
            return Err(BuildError::new(
                "dpop_replay_capacity",
                "must be more than 0",
            ));
        }
        let seen = Cache::builder()
            .max_capacity(capacity)
            // TinyLFU may refuse to admit a new key when full; every id must be remembered.
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(StoredLifetime)
            .build_with_hasher(DigestHash::default());
        Ok(Self { seen, window })
    }

    /// Records the proof's `jti` for its key, at `now` (seconds since the epoch).
    ///
    /// # Errors
    /// [`DpopError::Replayed`] if the same key's proof with the same `jti` was recorded and
    /// could still be within the window.
    pub fn first_use(&self, proof: &DpopProof, now: Duration) -> Result<(), DpopError> {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(proof.jkt.as_bytes());
        // The thumbprint is base64url: a NUL cannot occur in it, so the split is unambiguous.
        context.update(&[0]);
        context.update(proof.jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(context.finish().as_ref());
        // Until iat + window (a clock second's rounding on top), by the clock the proof was
        // judged with; memory time runs at the same pace.
        let until = Duration::from_secs(proof.issued_at.saturating_add(self.window.as_secs()) + 1);
        let lifetime = until
            .saturating_sub(now)
            .min(self.window * 2 + Duration::from_secs(1));
        let entry = self.seen.entry(key).or_insert_with(|| lifetime);
        if entry.is_fresh() {
            Ok(())
        } else {
            Err(DpopError::Replayed)
        }
    }

    /// How many ids are held now (after pending evictions), for metrics.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.seen.run_pending_tasks();
        self.seen.entry_count()
    }

    /// Whether no id is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn proof(jkt: &str, jti: &str) -> DpopProof {
        DpopProof {
            jkt: jkt.to_owned(),
            jti: jti.to_owned(),
            issued_at: NOW,
            nonce: None,
        }
    }

    #[test]
    fn a_jti_is_good_once_per_key() {
        let seen = ReplayCache::new(1000, Duration::from_secs(60)).unwrap();
        let now = Duration::from_secs(NOW);
        seen.first_use(&proof("key-a", "1"), now).unwrap();
        assert_eq!(
            seen.first_use(&proof("key-a", "1"), now),
            Err(DpopError::Replayed)
        );
        assert_eq!(
            seen.first_use(&proof("key-a", "1"), now + Duration::from_secs(59)),
            Err(DpopError::Replayed)
        );
        // Another client's id space: its "1" is its own.
        seen.first_use(&proof("key-b", "1"), now).unwrap();
        seen.first_use(&proof("key-a", "2"), now).unwrap();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn the_key_and_id_cannot_be_shifted_into_each_other() {
        let seen = ReplayCache::new(1000, Duration::from_secs(60)).unwrap();
        let now = Duration::from_secs(NOW);
        seen.first_use(&proof("ab", "c"), now).unwrap();
        seen.first_use(&proof("a", "bc"), now).unwrap();
    }

    #[test]
    fn racing_copies_of_one_proof_pass_once() {
        let seen = ReplayCache::new(1000, Duration::from_secs(60)).unwrap();
        let now = Duration::from_secs(NOW);
        let passed: usize = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| seen.first_use(&proof("k", "same"), now).is_ok()))
                .collect();
            runs.into_iter()
                .map(|run| usize::from(run.join().unwrap()))
                .sum()
        });
        assert_eq!(passed, 1);
    }

    #[test]
    fn a_capacity_of_zero_is_refused() {
        assert_eq!(
            ReplayCache::new(0, Duration::from_secs(60))
                .unwrap_err()
                .field(),
            "dpop_replay_capacity"
        );
    }
}

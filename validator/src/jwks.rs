//! The issuer's key set, cached. Reads are one atomic load of an `ArcSwap` snapshot: no lock
//! and no `.await` on the hot path. Fetches happen one at a time, and every request waiting
//! for a fetch shares its result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use reqwest::Client;
use url::Url;

use crate::algorithm::Algorithm;
use crate::clock::Clock;
use crate::discovery::IssuerMetadata;
use crate::error::{BuildError, Error, FetchError, InvalidToken, Unavailable};
use crate::http::{self, Fetched};
use crate::jwk::KeySet;
use crate::jws::UntrustedJws;
use crate::metrics::JwksMetrics;
use crate::source::KeySource;

/// The longest any configured period may be.
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long key sets live and how hard the issuer may be asked for them.
#[derive(Debug, Clone)]
pub(crate) struct JwksPolicy {
    pub(crate) min_ttl: Duration,
    pub(crate) default_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) refetch_cooldown: Duration,
    pub(crate) failure_backoff: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) max_document_bytes: usize,
    pub(crate) max_keys: usize,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(24 * 3600),
            refetch_cooldown: Duration::from_secs(30),
            failure_backoff: Duration::from_secs(5),
            max_stale: Duration::from_secs(12 * 3600),
            max_document_bytes: 256 * 1024,
            max_keys: 100,
        }
    }
}

impl JwksPolicy {
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.min_ttl > self.default_ttl || self.default_ttl > self.max_ttl {
            return Err(BuildError::new("jwks_ttl", "needs min <= default <= max"));
        }
        // Bounded so that time arithmetic can never overflow, and a key set is never trusted
        // for absurdly long.
        for (field, value) in [
            ("jwks_ttl", self.max_ttl),
            ("jwks_refetch_cooldown", self.refetch_cooldown),
            ("jwks_failure_backoff", self.failure_backoff),
            ("jwks_max_stale", self.max_stale),
        ] {
            if value > MAX_PERIOD {
                return Err(BuildError::new(field, "must be at most 7 days"));
            }
        }
        if self.refetch_cooldown.is_zero() {
            return Err(BuildError::new(
                "jwks_refetch_cooldown",
                "must be more than 0, or a flood of unknown kids becomes a flood of fetches",
            ));
        }
        if self.failure_backoff.is_zero() {
            return Err(BuildError::new(
                "jwks_failure_backoff",
                "must be more than 0",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_document_bytes) {
            return Err(BuildError::new(
                "max_document_bytes",
                "must be between 1 KiB and 16 MiB",
            ));
        }
        if !(1..=10_000).contains(&self.max_keys) {
            return Err(BuildError::new("max_keys", "must be between 1 and 10 000"));
        }
        Ok(())
    }

    fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.default_ttl)
            .clamp(self.min_ttl, self.max_ttl)
    }
}

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub(crate) enum JwksSource {
    Discovery(Arc<IssuerMetadata>),
    Url(Url),
    InProcess(Arc<dyn KeySource>),
}

/// One fetched key set and how long it may be used.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) keys: Arc<KeySet>,
    fresh_until: Duration,
    usable_until: Duration,
    etag: Option<String>,
}

impl Snapshot {
    pub(crate) fn is_fresh(&self, now: Duration) -> bool {
        now < self.fresh_until
    }
}

/// What a fetch that reached the issuer brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A key set.
    Keys,
    /// `304 Not Modified`: the set held is still the issuer's.
    NotModified,
}

/// Why a wanted fetch is not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Someone fetched while this caller waited: their result is shared.
    Shared,
    /// The set held will do (fresh, or usable while it is missing).
    NotNeeded,
    /// An unknown key asked for within the refetch cooldown.
    Cooldown,
}

/// The outcome of the last fetch attempt, shared with everyone who waited for it.
#[derive(Debug, Default)]
struct LastAttempt {
    at: Option<Duration>,
    error: Option<FetchError>,
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// No usable key set.
    Missing,
    /// The key set is past its lifetime but still usable: refreshed in the background.
    Stale,
    /// A token names a key the set does not have: at most once per cooldown.
    UnknownKey,
    /// Asked for explicitly.
    Forced,
}

pub(crate) struct JwksCache {
    source: JwksSource,
    policy: JwksPolicy,
    algorithms: Vec<Algorithm>,
    http: Client,
    clock: Arc<dyn Clock>,
    current: ArcSwapOption<Snapshot>,
    /// Serialises fetches; holds what the last one found.
    fetching: tokio::sync::Mutex<LastAttempt>,
    /// Bumped after every attempt, so a waiter can tell that someone fetched for it.
    attempts: AtomicU64,
    /// Clock time (ms) of the last attempt, readable without the lock.
    last_attempt_ms: AtomicU64,
    background_refresh: AtomicBool,
    /// Whether the last attempt failed.
    last_failed: AtomicBool,
    metrics: JwksMetrics,
}

/// Clears a flag however the task holding it ends.
struct ResetOnDrop<'a>(&'a AtomicBool);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JwksCache")
            .field("source", &self.source)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    pub(crate) fn new(
        source: JwksSource,
        policy: JwksPolicy,
        algorithms: Vec<Algorithm>,
        http: Client,
        clock: Arc<dyn Clock>,
        metrics: JwksMetrics,
    ) -> Self {
        Self {
            source,
            policy,
            algorithms,
            http,
            clock,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(LastAttempt::default()),
            attempts: AtomicU64::new(0),
            last_attempt_ms: AtomicU64::new(0),
            background_refresh: AtomicBool::new(false),
            last_failed: AtomicBool::new(false),
            metrics,
        }
    }

    /// Whether the current key set is fresh and still holds the key with this fingerprint:
    /// the check a cached verification must pass.
    pub(crate) fn fresh_set_holds(&self, fingerprint: u64, now: Duration) -> bool {
        let current = self.current.load();
        current.as_ref().is_some_and(|snapshot| {
            snapshot.is_fresh(now) && snapshot.keys.contains_fingerprint(fingerprint)
        })
    }

    /// Verifies the signature of `jws` with the issuer's keys, fetching them when needed.
    /// Fetches are boxed: the hot path's future stays small (it is moved on every call).
    /// Returns the verifying key's fingerprint.
    pub(crate) async fn verify(self: &Arc<Self>, jws: &UntrustedJws<'_>) -> Result<u64, Error> {
        let now = self.clock.now();
        let snapshot = match self.current.load_full() {
            Some(snapshot) if snapshot.is_fresh(now) => snapshot,
            Some(snapshot) if now < snapshot.usable_until => {
                self.refresh_in_background();
                snapshot
            }
            _ => Box::pin(self.fetch(Trigger::Missing)).await?,
        };
        match jws.verify(&snapshot.keys) {
            Err(InvalidToken::UnknownKey(kid)) => {
                // Within the cooldown the issuer is not asked again; but if it could not be
                // asked last time, the key may well exist: that is unavailable, not invalid.
                if !self.cooldown_passed(now) && !self.last_failed.load(Ordering::Acquire) {
                    self.metrics.cooldown.increment(1);
                    return Err(InvalidToken::UnknownKey(kid).into());
                }
                let snapshot = Box::pin(self.fetch(Trigger::UnknownKey)).await?;
                Ok(jws.verify(&snapshot.keys)?)
            }
            result => Ok(result?),
        }
    }

    /// Fetches the key set now (subject to the failure backoff).
    pub(crate) async fn refresh(self: &Arc<Self>) -> Result<usize, Error> {
        let snapshot = self.fetch(Trigger::Forced).await?;
        Ok(snapshot.keys.len())
    }

    fn cooldown_passed(&self, now: Duration) -> bool {
        let last = Duration::from_millis(self.last_attempt_ms.load(Ordering::Acquire));
        self.attempts.load(Ordering::Acquire) == 0 || now >= last + self.policy.refetch_cooldown
    }

    fn refresh_in_background(self: &Arc<Self>) {
        let backing_off = self.last_failed.load(Ordering::Acquire) && {
            let last = Duration::from_millis(self.last_attempt_ms.load(Ordering::Acquire));
            self.clock.now() < last + self.policy.failure_backoff
        };
        if backing_off || self.background_refresh.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = Arc::clone(self);
        let seen = self.attempts.load(Ordering::Acquire);
        tokio::spawn(async move {
            let _reset = ResetOnDrop(&cache.background_refresh);
            if let Err(error) = cache.fetch_once(Trigger::Stale, seen).await {
                tracing::warn!(%error, "background JWKS refresh failed; the last good key set keeps serving");
            }
        });
    }

    /// Runs one fetch, or shares the result of one that finished while this caller waited.
    ///
    /// The fetch runs in its own task: when the request that started it is dropped (a client
    /// gone, a timeout layer), it still finishes and records its outcome, so the cooldown and
    /// the failure backoff hold whatever the callers do.
    async fn fetch(self: &Arc<Self>, trigger: Trigger) -> Result<Arc<Snapshot>, Unavailable> {
        let seen = self.attempts.load(Ordering::Acquire);
        let cache = Arc::clone(self);
        match tokio::spawn(async move { cache.fetch_once(trigger, seen).await }).await {
            Ok(outcome) => outcome,
            Err(error) => Err(self.unavailable(FetchError::InvalidDocument {
                url: self.describe_source(),
                problem: format!("the fetch task failed: {error}"),
            })),
        }
    }

    /// `seen` is the attempt count when the caller started waiting: if it moved, someone
    /// fetched meanwhile and that result is shared.
    async fn fetch_once(&self, trigger: Trigger, seen: u64) -> Result<Arc<Snapshot>, Unavailable> {
        let mut last = self.fetching.lock().await;
        let now = self.clock.now();
        let someone_fetched = self.attempts.load(Ordering::Acquire) != seen;
        let current = self.current.load_full();
        let current_is_usable = current
            .as_ref()
            .is_some_and(|snapshot| now < snapshot.usable_until);
        let skip = match trigger {
            Trigger::Forced => None,
            _ if someone_fetched => Some(Skip::Shared),
            Trigger::Missing => current_is_usable.then_some(Skip::NotNeeded),
            Trigger::Stale => current
                .as_ref()
                .is_some_and(|snapshot| snapshot.is_fresh(now))
                .then_some(Skip::NotNeeded),
            Trigger::UnknownKey => last
                .at
                .is_some_and(|at| now < at + self.policy.refetch_cooldown)
                .then_some(Skip::Cooldown),
        };
        if let Some(skip) = skip {
            if skip == Skip::Cooldown {
                self.metrics.cooldown.increment(1);
            }
            return match (&last.error, current) {
                (None, Some(snapshot)) if now < snapshot.usable_until => Ok(snapshot),
                (Some(error), _) => Err(self.unavailable(error.clone())),
                (None, _) => Err(self.unavailable(FetchError::InvalidDocument {
                    url: self.describe_source(),
                    problem: "no key set".to_owned(),
                })),
            };
        }
        if let (Some(at), Some(error)) = (last.at, &last.error)
            && now < at + self.policy.failure_backoff
            && trigger != Trigger::Forced
        {
            self.metrics.backoff.increment(1);
            return Err(self.unavailable(FetchError::BackingOff(Box::new(error.clone()))));
        }

        if trigger == Trigger::UnknownKey {
            self.metrics.unknown_kid_refetches.increment(1);
        }
        let started = Instant::now();
        let result = self.fetch_snapshot(now, current.as_deref()).await;
        let counted = match &result {
            Ok((_, Answer::Keys)) => &self.metrics.ok,
            Ok((_, Answer::NotModified)) => &self.metrics.not_modified,
            Err(_) => &self.metrics.failed,
        };
        self.metrics.fetched(counted, started);
        last.at = Some(now);
        self.last_attempt_ms.store(
            u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        self.last_failed.store(result.is_err(), Ordering::Release);
        let outcome = match result {
            Ok((snapshot, _)) => {
                let snapshot = Arc::new(snapshot);
                self.current.store(Some(Arc::clone(&snapshot)));
                last.error = None;
                self.metrics.refreshed(now);
                Ok(snapshot)
            }
            Err(error) => {
                tracing::warn!(%error, trigger = ?trigger, "JWKS fetch failed");
                last.error = Some(error.clone());
                // The set held keeps serving other tokens within its max-stale bound, whatever
                // this fetch was for: stale if it is past its lifetime.
                self.metrics
                    .serving_stale(current.as_ref().is_some_and(|snapshot| {
                        !snapshot.is_fresh(now) && now < snapshot.usable_until
                    }));
                match current {
                    // The last good set keeps serving within its max-stale bound, except when
                    // a new key was asked for: that question stays unanswered.
                    Some(snapshot)
                        if now < snapshot.usable_until && trigger != Trigger::UnknownKey =>
                    {
                        Ok(snapshot)
                    }
                    _ => Err(self.unavailable(error)),
                }
            }
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    async fn fetch_snapshot(
        &self,
        now: Duration,
        previous: Option<&Snapshot>,
    ) -> Result<(Snapshot, Answer), FetchError> {
        if let JwksSource::InProcess(source) = &self.source {
            let body = source.jwks()?;
            let keys = self.read_key_set("the in-process key source", &body)?;
            let fresh_until = now + self.policy.lifetime(None);
            let snapshot = Snapshot {
                keys: Arc::new(keys),
                fresh_until,
                usable_until: fresh_until + self.policy.max_stale,
                etag: None,
            };
            return Ok((snapshot, Answer::Keys));
        }
        let url = self.jwks_uri().await?;
        let etag = previous.and_then(|snapshot| snapshot.etag.as_deref());
        let max_bytes = self.policy.max_document_bytes;
        let (keys, etag, max_age, answer) =
            match http::get(&self.http, &url, max_bytes, etag).await? {
                Fetched::NotModified { max_age } => match previous {
                    Some(previous) => (
                        Arc::clone(&previous.keys),
                        previous.etag.clone(),
                        max_age,
                        Answer::NotModified,
                    ),
                    None => {
                        return Err(FetchError::InvalidDocument {
                            url: url.to_string(),
                            problem: "304 without a cached key set".to_owned(),
                        });
                    }
                },
                Fetched::Body {
                    body,
                    etag,
                    max_age,
                } => (
                    Arc::new(self.read_key_set(url.as_str(), &body)?),
                    etag,
                    max_age,
                    Answer::Keys,
                ),
            };
        let fresh_until = now + self.policy.lifetime(max_age);
        let snapshot = Snapshot {
            keys,
            fresh_until,
            usable_until: fresh_until + self.policy.max_stale,
            etag,
        };
        Ok((snapshot, answer))
    }

    /// The usable keys of a JWKS document from `origin`; unusable ones are logged and skipped.
    fn read_key_set(&self, origin: &str, body: &[u8]) -> Result<KeySet, FetchError> {
        let (keys, skipped) = KeySet::from_jwks(body, &self.algorithms, self.policy.max_keys)
            .map_err(|problem| FetchError::InvalidDocument {
                url: origin.to_owned(),
                problem,
            })?;
        for key in skipped {
            tracing::warn!(kid = ?key.kid, reason = %key.reason, "JWKS key not used");
        }
        Ok(keys)
    }

    async fn jwks_uri(&self) -> Result<Url, FetchError> {
        match &self.source {
            JwksSource::InProcess(_) => Err(FetchError::InProcess {
                what: "key source",
                message: "has no URL".to_owned(),
            }),
            JwksSource::Url(url) => Ok(url.clone()),
            JwksSource::Discovery(metadata) => {
                metadata
                    .get()
                    .await?
                    .jwks_uri
                    .clone()
                    .ok_or_else(|| FetchError::InvalidDocument {
                        url: metadata.issuer().to_owned(),
                        problem: "the issuer metadata has no `jwks_uri`".to_owned(),
                    })
            }
        }
    }

    fn describe_source(&self) -> String {
        match &self.source {
            JwksSource::Discovery(metadata) => metadata.issuer().to_owned(),
            JwksSource::Url(url) => url.to_string(),
            JwksSource::InProcess(_) => "the in-process key source".to_owned(),
        }
    }

    fn unavailable(&self, error: FetchError) -> Unavailable {
        let metadata_known = match &self.source {
            JwksSource::Url(_) | JwksSource::InProcess(_) => true,
            JwksSource::Discovery(metadata) => metadata.is_known(),
        };
        let what = if metadata_known {
            "JWKS"
        } else {
            "issuer metadata"
        };
        Unavailable::new(
            what,
            self.policy.failure_backoff.max(Duration::from_secs(1)),
            error,
        )
    }
}

//! Revocation events: the issuer's Security Event Tokens (RFC 8417), read from its RFC 8936
//! poll stream held open, become a deny set that every validation consults — so that a token
//! revoked at the issuer is refused about a second later, while every other token is still
//! verified locally. The contract with the token service is `docs/revocation-events.md`.
//!
//! - `endpoint`: finding the poll endpoint (SSF 1.0 discovery, then the stream configuration);
//! - `set`: verifying one SET and reading what it revokes;
//! - `deny`: the deny set, an immutable snapshot swapped per batch, read without a lock;
//! - `health`: whether the stream is caught up, and since when it is not (the blind bound);
//! - `subscriber`: the background task that polls, verifies, applies and acknowledges.

mod deny;
mod endpoint;
mod health;
pub(crate) mod set;
pub(crate) mod subscriber;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};

use self::deny::{Denial, DenySet};
use self::health::StreamHealth;
pub(crate) use self::set::SetRules;
pub(crate) use self::subscriber::{PollSource, Subscriber};
use crate::clock::Clock;
use crate::error::{BuildError, Error, InvalidToken};
use crate::introspect::TokenDigest;
use crate::metrics::StreamMetrics;
use crate::principal::Principal;

/// How the subscription behaves; set through the `revocation_events_*` builder methods.
#[derive(Debug, Clone)]
pub(crate) struct EventsPolicy {
    /// How long the stream may fail before tokens are *unavailable*.
    pub(crate) max_blind: Duration,
    /// Total time a poll may take: more than the transmitter holds it.
    pub(crate) poll_timeout: Duration,
    /// How long an event without `tokens_expire_by` is held (from its `toe`), and how old a
    /// SET may be and still be applied.
    pub(crate) retention: Duration,
    /// The longest wait between attempts while the stream fails.
    pub(crate) max_backoff: Duration,
    /// Largest poll answer accepted.
    pub(crate) max_response_bytes: usize,
}

impl Default for EventsPolicy {
    fn default() -> Self {
        Self {
            max_blind: Duration::from_secs(300),
            poll_timeout: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
            max_backoff: Duration::from_secs(5),
            max_response_bytes: 8 * 1024 * 1024,
        }
    }
}

impl EventsPolicy {
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let within = |value: Duration, low: Duration, high: Duration| low <= value && value <= high;
        let second = Duration::from_secs(1);
        let day = Duration::from_secs(24 * 3600);
        if !within(self.max_blind, second, day) {
            return Err(BuildError::new(
                "revocation_events_max_blind",
                "must be between 1 s and 24 h",
            ));
        }
        if !within(self.poll_timeout, second, Duration::from_secs(600)) {
            return Err(BuildError::new(
                "revocation_events_poll_timeout",
                "must be between 1 s and 10 min (and longer than the transmitter holds a poll)",
            ));
        }
        if !within(self.retention, Duration::from_secs(60), day * 7) {
            return Err(BuildError::new(
                "revocation_events_retention",
                "must be between 1 min and 7 days",
            ));
        }
        if !within(
            self.max_backoff,
            Duration::from_millis(10),
            Duration::from_secs(300),
        ) {
            return Err(BuildError::new(
                "revocation_events_max_backoff",
                "must be between 10 ms and 5 min",
            ));
        }
        Ok(())
    }
}

/// What the validator of one issuer shares with its subscriber task: the deny set it reads on
/// every request, and the stream's health. The task is the only writer.
#[derive(Debug)]
pub(crate) struct Revocations {
    issuer: String,
    /// Tokens are valid this long past `exp`: denials are held that much longer.
    leeway: Duration,
    deny: ArcSwap<DenySet>,
    /// The version of `deny`, or 0 while it holds nothing: a principal that passed this version
    /// passes without the snapshot being loaded.
    current: AtomicU64,
    health: StreamHealth,
    events_applied: AtomicU64,
    sets_rejected: AtomicU64,
    last_event: ArcSwapOption<String>,
    metrics: StreamMetrics,
}

impl Revocations {
    pub(crate) fn new(
        issuer: String,
        leeway: Duration,
        policy: &EventsPolicy,
        started: Duration,
    ) -> Self {
        Self {
            metrics: StreamMetrics::register(&issuer),
            issuer,
            leeway,
            deny: ArcSwap::from_pointee(DenySet::empty()),
            current: AtomicU64::new(0),
            health: StreamHealth::new(policy.max_blind, policy.max_backoff, started),
            events_applied: AtomicU64::new(0),
            sets_rejected: AtomicU64::new(0),
            last_event: ArcSwapOption::empty(),
        }
    }

    /// Whether a verified principal may pass: not revoked, and the stream not blind beyond
    /// its bound. Three atomic loads when nothing was revoked, or nothing changed since this
    /// principal last passed.
    pub(crate) fn admit(&self, principal: &Principal, clock: &dyn Clock) -> Result<(), Error> {
        self.health.check(clock, &self.issuer)?;
        let current = self.current.load(Ordering::Acquire);
        if current == 0 || principal.revocation_check.passed() == current {
            return Ok(());
        }
        match self.deny.load().refuses(principal) {
            Some(reason) => Err(InvalidToken::Revoked(reason).into()),
            None => Ok(()),
        }
    }

    /// Whether the opaque token with this digest was revoked.
    pub(crate) fn refuses_digest(&self, digest: &TokenDigest) -> bool {
        self.deny.load().refuses_digest(digest)
    }

    fn apply(&self, denials: &[Denial], now: Duration) {
        let next = self.deny.load().with(denials, now, self.leeway);
        self.replace(next);
    }

    fn purge(&self, now: Duration) {
        if let Some(next) = self.deny.load().without_expired(now, self.leeway) {
            self.replace(next);
        }
    }

    /// The snapshot first, then its version: a reader that sees the version finds the
    /// snapshot (or a later one).
    fn replace(&self, next: DenySet) {
        let current = if next.len() == 0 { 0 } else { next.version() };
        self.metrics.deny_set_entries.set(next.len() as f64);
        self.deny.store(Arc::new(next));
        self.current.store(current, Ordering::Release);
    }

    pub(crate) fn status(&self, now: Duration) -> RevocationStreamStatus {
        let as_time = |since: Duration| UNIX_EPOCH.checked_add(since);
        RevocationStreamStatus {
            issuer: self.issuer.clone(),
            connected: self.health.is_caught_up(),
            blind_since: self.health.blind_since().and_then(as_time),
            unavailable: self.health.beyond_bound(now),
            last_event_id: self.last_event.load_full().map(|id| (*id).clone()),
            events_applied: self.events_applied.load(Ordering::Relaxed),
            sets_rejected: self.sets_rejected.load(Ordering::Relaxed),
            revoked_held: self.deny.load().len(),
            last_failure: self.health.last_failure(),
        }
    }
}

/// A running subscription: the shared state and the task, which ends when this is dropped
/// (with the last clone of the validator).
#[derive(Debug)]
pub(crate) struct Subscription {
    revocations: Arc<Revocations>,
    task: tokio::task::AbortHandle,
}

impl Subscription {
    /// Spawns `subscriber` on the ambient tokio runtime.
    ///
    /// # Errors
    /// Outside a runtime: the task has nowhere to run.
    pub(crate) fn start(subscriber: Subscriber) -> Result<Self, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            BuildError::new(
                "revocation_events",
                "needs a tokio runtime: build the validator inside one (the subscription is a \
                 task on it)",
            )
        })?;
        let revocations = Arc::clone(&subscriber.revocations);
        let task = runtime.spawn(subscriber.run()).abort_handle();
        Ok(Self { revocations, task })
    }

    pub(crate) fn revocations(&self) -> &Revocations {
        &self.revocations
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The state of one issuer's revocation event stream, from
/// [`Validator::revocation_stream_status`](crate::Validator::revocation_stream_status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevocationStreamStatus {
    /// The issuer whose stream this is.
    pub issuer: String,
    /// Whether the last poll was answered with nothing more waiting: every revocation up to
    /// then is known.
    pub connected: bool,
    /// While not connected: since when revocations are not known — the last answer before the
    /// outage, or the subscription's start before the first catch-up.
    pub blind_since: Option<SystemTime>,
    /// Whether blind for longer than `revocation_events_max_blind`: every token of this issuer
    /// is then *unavailable*.
    pub unavailable: bool,
    /// The id (`jti`) of the last SET of the last batch received.
    pub last_event_id: Option<String>,
    /// SETs verified and applied since the subscription started (a SET delivered again is
    /// counted once).
    pub events_applied: u64,
    /// SETs that failed verification: ignored, and acknowledged with an error.
    pub sets_rejected: u64,
    /// Revoked identifiers (token ids, token digests, sessions, users, clients) held now.
    pub revoked_held: usize,
    /// Why the stream last failed, while it is failing.
    pub last_failure: Option<String>,
}

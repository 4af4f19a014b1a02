//! Whether the validator knows the issuer's latest revocations, and since when it has not.
//!
//! The subscriber is the only writer; validation reads one atomic on every request (two when
//! the stream is failing), so the bound costs nothing while the stream is healthy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::clock::Clock;
use crate::error::{FetchError, Unavailable};

/// `blind_since_ms` while the stream is caught up.
const CAUGHT_UP: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct StreamHealth {
    max_blind: Duration,
    /// How long a refused client should wait before retrying.
    retry_after: Duration,
    /// Clock time (ms) since which the latest events are not known: the last answer before an
    /// outage, or the subscription's start before the first catch-up. `CAUGHT_UP` otherwise.
    blind_since_ms: AtomicU64,
    /// Clock time (ms) of the last answer while caught up.
    last_answer_ms: AtomicU64,
    /// Why the stream last failed: the cause of the *unavailable* outcome.
    last_failure: ArcSwapOption<FetchError>,
}

fn millis(time: Duration) -> u64 {
    u64::try_from(time.as_millis()).unwrap_or(u64::MAX - 1)
}

impl StreamHealth {
    /// Blind from `started`, until the first catch-up.
    pub(crate) fn new(max_blind: Duration, retry_after: Duration, started: Duration) -> Self {
        Self {
            max_blind,
            retry_after,
            blind_since_ms: AtomicU64::new(millis(started)),
            last_answer_ms: AtomicU64::new(millis(started)),
            last_failure: ArcSwapOption::empty(),
        }
    }

    /// *Unavailable* once blind for longer than `max_blind`: revoked tokens could no longer be
    /// told from the others. The clock is read only while blind.
    pub(crate) fn check(&self, clock: &dyn Clock, issuer: &str) -> Result<(), Unavailable> {
        let since = self.blind_since_ms.load(Ordering::Acquire);
        if since == CAUGHT_UP || millis(clock.now()).saturating_sub(since) <= millis(self.max_blind)
        {
            return Ok(());
        }
        let cause = self.last_failure.load_full().map_or_else(
            || FetchError::Transport {
                url: issuer.to_owned(),
                message: "the revocation event stream has not answered yet".to_owned(),
            },
            |failure| (*failure).clone(),
        );
        Err(Unavailable::new(
            "revocation events",
            self.retry_after,
            cause,
        ))
    }

    /// An answer that leaves nothing waiting: every event up to now is known.
    pub(crate) fn caught_up(&self, now: Duration) {
        self.last_answer_ms.store(millis(now), Ordering::Release);
        self.blind_since_ms.store(CAUGHT_UP, Ordering::Release);
        self.last_failure.store(None);
    }

    /// An answer with more waiting: progress, but caught up only if it already was.
    pub(crate) fn progressed(&self, now: Duration) {
        if self.is_caught_up() {
            self.last_answer_ms.store(millis(now), Ordering::Release);
        }
    }

    /// A failed poll: blind since the last answer, if it was not already.
    pub(crate) fn failed(&self, error: FetchError) {
        self.last_failure.store(Some(std::sync::Arc::new(error)));
        if self.is_caught_up() {
            let last = self.last_answer_ms.load(Ordering::Acquire);
            self.blind_since_ms.store(last, Ordering::Release);
        }
    }

    pub(crate) fn is_caught_up(&self) -> bool {
        self.blind_since_ms.load(Ordering::Acquire) == CAUGHT_UP
    }

    /// Since when the latest events are not known (clock time), or `None` while caught up.
    pub(crate) fn blind_since(&self) -> Option<Duration> {
        let since = self.blind_since_ms.load(Ordering::Acquire);
        (since != CAUGHT_UP).then(|| Duration::from_millis(since))
    }

    /// Whether blind for longer than the bound at `now`.
    pub(crate) fn beyond_bound(&self, now: Duration) -> bool {
        self.blind_since()
            .is_some_and(|since| now.saturating_sub(since) > self.max_blind)
    }

    /// The last failure, for the status.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last_failure
            .load()
            .as_ref()
            .map(|failure| failure.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    const START: Duration = Duration::from_secs(1_000);
    const BOUND: Duration = Duration::from_secs(300);

    fn failure() -> FetchError {
        FetchError::Status {
            url: "https://idp.test/ssf/poll".to_owned(),
            status: 503,
        }
    }

    fn health() -> StreamHealth {
        StreamHealth::new(BOUND, Duration::from_secs(5), START)
    }

    #[test]
    fn blind_time_counts_from_the_start_until_the_first_catch_up() {
        let health = health();
        assert_eq!(health.blind_since(), Some(START));
        let clock = MockClock::new(START + BOUND);
        assert!(health.check(&clock, "i").is_ok());
        clock.advance(Duration::from_secs(1));
        let error = health.check(&clock, "i");
        assert!(error.unwrap_err().to_string().contains("not answered yet"));
        health.progressed(START + BOUND);
        assert_eq!(
            health.blind_since(),
            Some(START),
            "catching up is not caught up"
        );
        health.caught_up(START + BOUND * 2);
        clock.advance(BOUND * 10);
        assert!(health.check(&clock, "i").is_ok());
    }

    #[test]
    fn an_outage_counts_from_the_last_answer_and_ends_with_the_next() {
        let health = health();
        health.caught_up(START);
        health.progressed(START + Duration::from_secs(10));
        health.failed(failure());
        health.failed(failure());
        assert_eq!(health.blind_since(), Some(START + Duration::from_secs(10)));
        let late = START + Duration::from_secs(10) + BOUND + Duration::from_secs(1);
        assert!(health.beyond_bound(late));
        let clock = MockClock::new(late);
        let error = health.check(&clock, "i").unwrap_err();
        assert_eq!(error.what(), "revocation events");
        assert!(matches!(
            error.fetch_error(),
            FetchError::Status { status: 503, .. }
        ));
        health.caught_up(late);
        assert!(health.check(&clock, "i").is_ok());
        assert_eq!(health.blind_since(), None);
        assert_eq!(health.last_failure(), None);
    }
}

//! Time comes from an injected clock so tests never sleep.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, as a duration since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, as time since 1970-01-01T00:00:00Z.
    fn now(&self) -> Duration;
}

/// A shared clock is a clock (an application hands the validator the clock it uses itself).
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        // A clock before 1970 is a broken host; treat it as the epoch (every token then looks
        // issued in the future and fails, which is the safe side).
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Clone)]
pub struct MockClock {
    millis: Arc<AtomicU64>,
}

impl MockClock {
    /// A clock standing at `since_epoch`.
    #[must_use]
    pub fn new(since_epoch: Duration) -> Self {
        let millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
        Self {
            millis: Arc::new(AtomicU64::new(millis)),
        }
    }

    /// A clock standing at the current system time.
    #[must_use]
    pub fn at_system_time() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

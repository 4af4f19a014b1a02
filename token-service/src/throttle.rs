//! Login throttling: after too many failures, a username (whether it exists or not) and a
//! client address are refused for a while. Counted per instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moka::sync::Cache;

/// Failures allowed per username in a window.
pub const PER_USER: u32 = 5;
/// Failures allowed per client address in a window.
pub const PER_ADDRESS: u32 = 20;
/// The window, counted from the first failure.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failure counters.
#[derive(Clone)]
pub struct Throttle {
    users: Cache<String, Arc<AtomicU32>>,
    addresses: Cache<String, Arc<AtomicU32>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Throttle").finish_non_exhaustive()
    }
}

impl Default for Throttle {
    fn default() -> Self {
        let counters = || {
            Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build()
        };
        Self {
            users: counters(),
            addresses: counters(),
        }
    }
}

fn count(cache: &Cache<String, Arc<AtomicU32>>, key: &str) -> u32 {
    cache
        .get(key)
        .map_or(0, |counter| counter.load(Ordering::Relaxed))
}

impl Throttle {
    /// Whether this attempt must be refused without checking the password.
    #[must_use]
    pub fn blocked(&self, username: &str, address: Option<&str>) -> bool {
        count(&self.users, &username.to_lowercase()) >= PER_USER
            || address.is_some_and(|address| count(&self.addresses, address) >= PER_ADDRESS)
    }

    /// Counts a failed attempt.
    pub fn failed(&self, username: &str, address: Option<&str>) {
        let bump = |cache: &Cache<String, Arc<AtomicU32>>, key: String| {
            cache
                .get_with(key, || Arc::new(AtomicU32::new(0)))
                .fetch_add(1, Ordering::Relaxed);
        };
        bump(&self.users, username.to_lowercase());
        if let Some(address) = address {
            bump(&self.addresses, address.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_addresses_are_blocked_after_their_limits() {
        let throttle = Throttle::default();
        for _ in 0..PER_USER {
            assert!(!throttle.blocked("Jane", Some("10.0.0.1")));
            throttle.failed("Jane", Some("10.0.0.1"));
        }
        assert!(
            throttle.blocked("jane", None),
            "names are compared without case"
        );
        assert!(!throttle.blocked("other", Some("10.0.0.1")));
        for index in 0..PER_ADDRESS {
            throttle.failed(&format!("user{index}"), Some("10.0.0.2"));
        }
        assert!(throttle.blocked("fresh", Some("10.0.0.2")));
        assert!(!throttle.blocked("fresh", Some("10.0.0.3")));
    }
}

//! Login throttling: after too many failures, a username (whether it exists or not) and a
//! client address are refused for a while. Failures are counted in the store, so every
//! instance sees the failures made at the others: two instances allow no more attempts than
//! one. Keys are digests: a password typed into the username field is never stored.

use std::sync::Arc;
use std::time::Duration;

use crate::secret::token_digest;
use crate::store::{Store, StoreError};

/// Failures allowed per username in a window.
pub const PER_USER: u64 = 5;
/// Failures allowed per client address in a window.
pub const PER_ADDRESS: u64 = 20;
/// The window, counted from the first failure.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sign-up attempts allowed per client address in a window (successful or not: creating
/// accounts in bulk is the abuse to slow down).
pub const SIGNUPS_PER_ADDRESS: u64 = 10;

/// Failure counters kept in the store.
#[derive(Clone)]
pub struct Throttle {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Throttle").finish_non_exhaustive()
    }
}

fn user_key(username: &str) -> [u8; 32] {
    token_digest(&format!("user\0{}", username.to_lowercase()))
}

fn address_key(address: &str) -> [u8; 32] {
    token_digest(&format!("address\0{address}"))
}

/// The address itself for IPv4, its /64 for IPv6.
fn network_of(address: &str) -> String {
    match address.parse::<std::net::Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_none() => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
        _ => address.to_owned(),
    }
}

fn signup_key(address: &str) -> [u8; 32] {
    token_digest(&format!("signup\0{address}"))
}

impl Throttle {
    /// Counters in `store`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Whether this attempt must be refused without checking the password.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: the caller refuses the attempt (it cannot be counted).
    pub async fn blocked(
        &self,
        username: &str,
        address: Option<&str>,
        now: u64,
    ) -> Result<bool, StoreError> {
        if self.store.login_failures(&user_key(username), now).await? >= PER_USER {
            return Ok(true);
        }
        match address {
            Some(address) => Ok(self
                .store
                .login_failures(&address_key(address), now)
                .await?
                >= PER_ADDRESS),
            None => Ok(false),
        }
    }

    /// Counts a sign-up attempt from `address` and says whether it is over the limit. The
    /// count is taken first, so concurrent attempts cannot all slip under it; IPv6 addresses
    /// count by their /64, which one machine usually has whole.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: the caller refuses the attempt (it could not be counted).
    pub async fn signup_over_limit(
        &self,
        address: Option<&str>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let Some(address) = address else {
            return Ok(false);
        };
        let key = signup_key(&network_of(address));
        self.store
            .record_login_failure(&key, now, WINDOW.as_secs())
            .await?;
        Ok(self.store.login_failures(&key, now).await? > SIGNUPS_PER_ADDRESS)
    }

    /// Counts a failed attempt (a store failure is logged: the attempt was refused anyway).
    pub async fn failed(&self, username: &str, address: Option<&str>, now: u64) {
        let window = WINDOW.as_secs();
        let mut keys = vec![user_key(username)];
        keys.extend(address.map(address_key));
        for key in keys {
            if let Err(error) = self.store.record_login_failure(&key, now, window).await {
                tracing::error!(%error, "could not count a failed sign-in");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64_and_ipv4_by_itself() {
        assert_eq!(
            network_of("2001:db8:1:2::a"),
            network_of("2001:db8:1:2:ffff::1")
        );
        assert_ne!(network_of("2001:db8:1:2::a"), network_of("2001:db8:1:3::a"));
        assert_eq!(network_of("192.0.2.9"), "192.0.2.9");
        assert_eq!(network_of("::ffff:192.0.2.9"), "::ffff:192.0.2.9");
    }
    use crate::store::SqlStore;

    #[tokio::test]
    async fn users_and_addresses_are_blocked_after_their_limits_until_the_window_ends() {
        let throttle = Throttle::new(Arc::new(SqlStore::sqlite("sqlite::memory:").await.unwrap()));
        let now = 1_000;
        for _ in 0..PER_USER {
            assert!(
                !throttle
                    .blocked("Jane", Some("10.0.0.1"), now)
                    .await
                    .unwrap()
            );
            throttle.failed("Jane", Some("10.0.0.1"), now).await;
        }
        assert!(
            throttle.blocked("jane", None, now).await.unwrap(),
            "names are compared without case"
        );
        assert!(
            !throttle
                .blocked("other", Some("10.0.0.1"), now)
                .await
                .unwrap()
        );
        for index in 0..PER_ADDRESS {
            throttle
                .failed(&format!("user{index}"), Some("10.0.0.2"), now)
                .await;
        }
        assert!(
            throttle
                .blocked("fresh", Some("10.0.0.2"), now)
                .await
                .unwrap()
        );
        assert!(
            !throttle
                .blocked("fresh", Some("10.0.0.3"), now)
                .await
                .unwrap()
        );
        // The window is counted from the first failure; after it, counting starts again.
        let later = now + WINDOW.as_secs();
        assert!(
            !throttle
                .blocked("jane", Some("10.0.0.2"), later)
                .await
                .unwrap()
        );
        throttle.failed("jane", None, later).await;
        assert!(!throttle.blocked("jane", None, later).await.unwrap());
    }
}

//! Attempt limits for sign-in, the password page and sign-up. An attempt is counted before it
//! is judged — one statement increments a counter and returns it — so concurrent attempts
//! each see a different count and no more passwords are checked than a limit allows; a
//! successful sign-in takes its count back. Counters live in the store, so every instance's
//! attempts add up to one limit. Keys are digests: a password typed into the username field is
//! never stored.
//!
//! # Whom a limit stops
//!
//! A guesser is slowed by three counters: the account from one network
//! ([`PER_ACCOUNT_PER_NETWORK`]), the network whatever the account ([`PER_NETWORK`]), and the
//! account from every network together ([`PER_ACCOUNT`]). Knowing a username is not enough to
//! keep its owner out: the first two only refuse the guesser's own network, and the third takes
//! attempts from more than `PER_ACCOUNT / PER_NETWORK` networks in one window — an attacker
//! with that many addresses can still lock an account for a window at a time, the price of
//! stopping a distributed guesser at all. A network is an IPv4 address or an IPv6 /64 (which
//! one machine usually has whole).

use std::sync::Arc;
use std::time::Duration;

use crate::secret::token_digest;
use crate::store::{Store, StoreError};

/// Failed attempts allowed on one account from one network in a window.
pub const PER_ACCOUNT_PER_NETWORK: u64 = 5;
/// Failed attempts allowed from one network, on any accounts, in a window.
pub const PER_NETWORK: u64 = 20;
/// Failed attempts allowed on one account from all networks together in a window.
pub const PER_ACCOUNT: u64 = 100;
/// The window, counted from the first attempt.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed client (or API) authentications allowed for one client id from one network in a
/// window. Only secrets the service has not seen match are counted: a client presenting its
/// right secret again is never slowed.
pub const CLIENT_PER_NETWORK: u64 = 10;
/// Failed client authentications allowed from one network, whatever the ids, in a window.
pub const CLIENTS_PER_NETWORK: u64 = 50;
/// Failed authentications allowed for one client id from all networks together in a window.
pub const CLIENT_FROM_ALL_NETWORKS: u64 = 100;
/// Sign-up attempts allowed per network in a window (successful or not: creating accounts in
/// bulk is the abuse to slow down).
pub const SIGNUPS_PER_ADDRESS: u64 = 10;

/// Attempt counters kept in the store.
#[derive(Clone)]
pub struct Throttle {
    store: Arc<dyn Store>,
    /// Counter keys this instance saw refuse an attempt → when their window ends.
    refused: moka::sync::Cache<[u8; 32], u64>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Throttle").finish_non_exhaustive()
    }
}

/// Whether an attempt may go on to be judged.
#[derive(Debug)]
#[must_use]
pub enum Admission {
    /// Counted: judge it, and report a success with [`Attempt::succeeded`].
    Admitted(Attempt),
    /// Over a limit: refuse it unjudged; the limit lifts after `retry_after`.
    Refused {
        /// Until the fullest window closes.
        retry_after: Duration,
    },
}

/// An attempt that was counted before it was judged.
pub struct Attempt {
    store: Arc<dyn Store>,
    keys: Vec<[u8; 32]>,
    now: u64,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Attempt").finish_non_exhaustive()
    }
}

impl Attempt {
    /// It succeeded: its count is taken back, so that the owner's own successes never add up
    /// to a limit (a store failure is logged: the count then stands until its window ends).
    pub async fn succeeded(self) {
        for key in &self.keys {
            if let Err(error) = self.store.uncount_attempt(key, self.now).await {
                tracing::error!(%error, "could not take back a successful attempt");
            }
        }
    }
}

fn digest(parts: &[&str]) -> [u8; 32] {
    token_digest(&parts.join("\0"))
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

/// The counters an attempt is counted under, with their limits: first those of the caller's
/// network, narrowest first, then the one of the account (or client) from all networks.
#[derive(Debug, Clone)]
pub struct Limits {
    network: Vec<([u8; 32], u64)>,
    everywhere: Option<([u8; 32], u64)>,
}

impl Limits {
    fn all(&self) -> impl Iterator<Item = &([u8; 32], u64)> {
        self.network.iter().chain(&self.everywhere)
    }
}

impl Limits {
    /// A password attempt on `username` from `address` (`None`: the peer is unknown, and only
    /// the account's own limits apply).
    #[must_use]
    pub fn sign_in(username: &str, address: Option<&str>) -> Self {
        let account = username.to_lowercase();
        let network = address.map_or_else(|| "unknown".to_owned(), network_of);
        let mut limits = vec![(
            digest(&["user", &account, &network]),
            PER_ACCOUNT_PER_NETWORK,
        )];
        if address.is_some() {
            limits.push((digest(&["address", &network]), PER_NETWORK));
        }
        Self {
            network: limits,
            everywhere: Some((digest(&["user", &account]), PER_ACCOUNT)),
        }
    }

    /// A client (or API) authentication by `id` from `address`: the same three kinds of
    /// counter, under limits of their own.
    #[must_use]
    pub fn client_auth(id: &str, address: Option<&str>) -> Self {
        let network = address.map_or_else(|| "unknown".to_owned(), network_of);
        let mut limits = vec![(digest(&["client", id, &network]), CLIENT_PER_NETWORK)];
        if address.is_some() {
            limits.push((digest(&["client-address", &network]), CLIENTS_PER_NETWORK));
        }
        Self {
            network: limits,
            everywhere: Some((digest(&["client", id]), CLIENT_FROM_ALL_NETWORKS)),
        }
    }

    /// A sign-up from `address`; without an address there is no limit.
    #[must_use]
    pub fn sign_up(address: Option<&str>) -> Self {
        Self {
            network: address
                .map(|address| {
                    (
                        digest(&["signup", &network_of(address)]),
                        SIGNUPS_PER_ADDRESS,
                    )
                })
                .into_iter()
                .collect(),
            everywhere: None,
        }
    }
}

impl Throttle {
    /// Counters in `store`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            refused: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }

    /// Counts a sign-up attempt before it is judged ([`Limits::sign_up`]); every one counts,
    /// successful or not.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: the caller refuses the attempt (it could not be counted).
    pub async fn sign_up(&self, address: Option<&str>, now: u64) -> Result<Admission, StoreError> {
        self.admit(&Limits::sign_up(address), now).await
    }

    /// Whether this instance has seen a counter of the caller's network among `limits` refuse
    /// an attempt in its open window: the answer without a store round trip, for checks that
    /// skip counting (a remembered client secret), so that a caller refused on its network
    /// cannot tell a right secret from a wrong one by the answer. The counter of all networks
    /// is left out: a flood from many networks must not stop a client presenting its right
    /// secret from its own.
    #[must_use]
    pub fn refused_here(&self, limits: &Limits, now: u64) -> Option<Duration> {
        limits
            .network
            .iter()
            .filter_map(|(key, _)| self.refused.get(key))
            .filter(|window_ends| *window_ends > now)
            .max()
            .map(|window_ends| Duration::from_secs(window_ends - now))
    }

    /// Counts one attempt under each of `limits` in turn and admits it when every count is
    /// within its limit. The first count over its limit refuses it, and the keys after it are
    /// not counted: refused attempts from one network never add up on the account's counter
    /// of all networks, so they cannot lock its owner out elsewhere.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: the caller refuses the attempt (it could not be counted).
    pub async fn admit(&self, limits: &Limits, now: u64) -> Result<Admission, StoreError> {
        for (key, limit) in limits.all() {
            let count = self.store.count_attempt(key, now, WINDOW.as_secs()).await?;
            if count.attempts > *limit {
                self.refused.insert(*key, count.window_ends);
                let retry_after = Duration::from_secs(count.window_ends.saturating_sub(now).max(1));
                return Ok(Admission::Refused { retry_after });
            }
        }
        Ok(Admission::Admitted(Attempt {
            store: Arc::clone(&self.store),
            keys: limits.all().map(|(key, _)| *key).collect(),
            now,
        }))
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

    async fn throttle() -> Throttle {
        Throttle::new(Arc::new(SqlStore::sqlite("sqlite::memory:").await.unwrap()))
    }

    async fn admitted(
        throttle: &Throttle,
        username: &str,
        address: Option<&str>,
        now: u64,
    ) -> bool {
        matches!(
            throttle
                .admit(&Limits::sign_in(username, address), now)
                .await
                .unwrap(),
            Admission::Admitted(_)
        )
    }

    #[tokio::test]
    async fn a_guesser_is_stopped_on_their_network_and_the_owner_elsewhere_is_not() {
        let throttle = throttle().await;
        let now = 1_000;
        for _ in 0..PER_ACCOUNT_PER_NETWORK {
            assert!(admitted(&throttle, "Jane", Some("10.0.0.1"), now).await);
        }
        assert!(
            !admitted(&throttle, "jane", Some("10.0.0.1"), now).await,
            "names are compared without case"
        );
        // The owner, from elsewhere, is not kept out; other accounts from there are not either.
        assert!(admitted(&throttle, "jane", Some("10.0.0.9"), now).await);
        assert!(admitted(&throttle, "other", Some("10.0.0.1"), now).await);
        // A network is stopped whatever the accounts (this one has used 6 of its 20).
        for index in 0..PER_NETWORK - 6 {
            assert!(admitted(&throttle, &format!("user{index}"), Some("10.0.0.1"), now).await);
        }
        assert!(!admitted(&throttle, "fresh", Some("10.0.0.1"), now).await);
        // The window is counted from the first attempt; after it, counting starts again.
        let later = now + WINDOW.as_secs();
        assert!(admitted(&throttle, "jane", Some("10.0.0.1"), later).await);
    }

    #[tokio::test]
    async fn successes_are_taken_back_and_refusals_say_when_to_retry() {
        let throttle = throttle().await;
        let now = 1_000;
        for _ in 0..3 * PER_ACCOUNT_PER_NETWORK {
            let Admission::Admitted(attempt) = throttle
                .admit(&Limits::sign_in("jane", Some("10.0.0.1")), now)
                .await
                .unwrap()
            else {
                panic!("a successful attempt counted against the owner");
            };
            attempt.succeeded().await;
        }
        for _ in 0..PER_ACCOUNT_PER_NETWORK {
            assert!(admitted(&throttle, "jane", Some("10.0.0.1"), now + 60).await);
        }
        match throttle
            .admit(&Limits::sign_in("jane", Some("10.0.0.1")), now + 60)
            .await
            .unwrap()
        {
            Admission::Refused { retry_after } => {
                assert_eq!(retry_after, WINDOW - Duration::from_secs(60));
            }
            Admission::Admitted(_) => panic!("the sixth failure was admitted"),
        }
    }

    #[tokio::test]
    async fn refused_attempts_from_one_network_do_not_add_up_for_the_account() {
        let throttle = throttle().await;
        let now = 1_000;
        for _ in 0..10 * PER_ACCOUNT {
            let _ = throttle
                .admit(&Limits::sign_in("jane", Some("10.0.0.1")), now)
                .await
                .unwrap();
        }
        assert!(admitted(&throttle, "jane", Some("10.0.0.2"), now).await);
    }

    #[tokio::test]
    async fn an_account_is_guarded_from_every_network_together() {
        let throttle = throttle().await;
        let now = 1_000;
        let per_network = PER_ACCOUNT_PER_NETWORK;
        let networks = PER_ACCOUNT.div_ceil(per_network);
        let mut admitted_total = 0;
        for network in 0..networks + 2 {
            let address = format!("10.1.{}.{}", network / 250, network % 250);
            for _ in 0..per_network {
                if admitted(&throttle, "jane", Some(&address), now).await {
                    admitted_total += 1;
                }
            }
        }
        assert_eq!(admitted_total, PER_ACCOUNT);
    }
}

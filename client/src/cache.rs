//! The token cache: one token held until shortly before it expires, one request for a new one
//! in flight however many callers wait, and a refused token dropped only if it is still the one
//! held.
//!
//! The request runs as a task of its own, so that a caller giving up does not cancel it for the
//! others; its answer reaches every waiter through a `watch` channel. Time is tokio's, so that
//! tests pause and advance it instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Error;
use crate::token::AccessToken;

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Starts one token request.
pub(crate) type Fetch = Arc<dyn Fn() -> BoxFuture<Result<AccessToken, Error>> + Send + Sync>;

/// The longest a token is kept, whatever `expires_in` says.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The longest a server's `Retry-After` holds requests off: a wrong one (a day, a date years
/// ahead) must not stop the app from trying once the server is back.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long tokens are kept and how often the endpoint may be asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// A new token is fetched this long before the held one expires (at most half its lifetime).
    pub(crate) refresh_margin: Duration,
    /// The lifetime of a token whose response has no `expires_in`.
    pub(crate) assumed_lifetime: Duration,
    /// After a failed request, callers without a valid token get its error for this long
    /// before another request is made — longer if the server's `Retry-After` says so.
    pub(crate) retry_after_failure: Duration,
    /// A refused token is dropped at most once per this period.
    pub(crate) invalidation_cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(30),
            assumed_lifetime: Duration::from_secs(300),
            retry_after_failure: Duration::from_secs(1),
            invalidation_cooldown: Duration::from_secs(10),
        }
    }
}

/// The answer of a request in flight, `None` until it comes.
type Flight = watch::Receiver<Option<Result<AccessToken, Error>>>;

pub(crate) struct Cache {
    fetch: Fetch,
    policy: Policy,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    flight: Option<Flight>,
    failure: Option<(Instant, Error)>,
    last_invalidated: Option<Instant>,
}

struct Held {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
}

impl Held {
    /// Times count from when the token was asked for: the server's clock for `expires_in`
    /// started after that, so the token cannot expire sooner than this says.
    fn new(token: AccessToken, requested_at: Instant, policy: &Policy) -> Self {
        let lifetime = token
            .expires_in()
            .unwrap_or(policy.assumed_lifetime)
            .min(MAX_LIFETIME);
        let expires_at = requested_at + lifetime;
        Self {
            token,
            refresh_at: expires_at - policy.refresh_margin.min(lifetime / 2),
            expires_at,
        }
    }
}

enum Lookup {
    Ready(AccessToken),
    Wait(Flight),
}

impl Cache {
    pub(crate) fn new(fetch: Fetch, policy: Policy) -> Self {
        Self {
            fetch,
            policy,
            state: Arc::default(),
        }
    }

    /// The held token while it is fresh; otherwise the answer of the one request in flight
    /// (started if none is). Between the refresh time and expiry, the held token is returned at
    /// once while one request for its successor runs.
    pub(crate) async fn token(&self) -> Result<AccessToken, Error> {
        match self.lookup()? {
            Lookup::Ready(token) => Ok(token),
            Lookup::Wait(flight) => self.wait(flight).await,
        }
    }

    fn lookup(&self) -> Result<Lookup, Error> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        let holding_off = state
            .failure
            .as_ref()
            .is_some_and(|(at, error)| elapsed_within(now, *at, hold_off(&self.policy, error)));
        if let Some(held) = &state.held {
            let token = held.token.clone();
            if now < held.refresh_at {
                return Ok(Lookup::Ready(token));
            }
            if now < held.expires_at {
                if state.flight.is_none() && !holding_off {
                    // Without a runtime the held token still serves; the next call retries.
                    let _ = self.start(&mut state);
                }
                return Ok(Lookup::Ready(token));
            }
        }
        if let Some(flight) = &state.flight {
            return Ok(Lookup::Wait(flight.clone()));
        }
        if let Some((_, error)) = state.failure.as_ref().filter(|_| holding_off) {
            return Err(error.clone());
        }
        self.start(&mut state).map(Lookup::Wait)
    }

    fn start(&self, state: &mut State) -> Result<Flight, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (answer, flight) = watch::channel(None);
        let requested_at = Instant::now();
        let request = (self.fetch)();
        let shared = Arc::clone(&self.state);
        let policy = self.policy;
        runtime.spawn(async move {
            let result = request.await;
            let settled = settle(&shared, &policy, requested_at, result);
            answer.send_replace(Some(settled));
        });
        state.flight = Some(flight.clone());
        Ok(flight)
    }

    async fn wait(&self, mut flight: Flight) -> Result<AccessToken, Error> {
        let answered = flight
            .wait_for(Option::is_some)
            .await
            .map(|answer| answer.clone());
        match answered {
            Ok(Some(result)) => result,
            Ok(None) | Err(_) => {
                // The task ended unanswered (its runtime is shutting down): forget it, so that
                // the next caller starts another.
                let mut state = lock(&self.state);
                if state
                    .flight
                    .as_ref()
                    .is_some_and(|current| current.same_channel(&flight))
                {
                    state.flight = None;
                }
                Err(Error::Aborted)
            }
        }
    }

    /// Waits until no request is in flight (tests: a refresh ahead has settled).
    #[cfg(test)]
    async fn settled(&self) {
        let flight = lock(&self.state).flight.clone();
        if let Some(mut flight) = flight {
            let _ = flight.wait_for(Option::is_some).await;
        }
    }

    /// Drops the held token if it is `refused` — not if it was already replaced — and at most
    /// once per cooldown.
    pub(crate) fn invalidate(&self, refused: &AccessToken) {
        let mut state = lock(&self.state);
        if state
            .held
            .as_ref()
            .is_none_or(|held| held.token != *refused)
        {
            return;
        }
        let now = Instant::now();
        if let Some(at) = state.last_invalidated
            && elapsed_within(now, at, self.policy.invalidation_cooldown)
        {
            tracing::debug!(
                "a refused access token is kept: another was dropped less than the cooldown ago"
            );
            return;
        }
        state.held = None;
        state.last_invalidated = Some(now);
        tracing::debug!("access token dropped: the API refused it");
    }
}

/// Records a request's outcome; called once per request, by its task.
fn settle(
    state: &Mutex<State>,
    policy: &Policy,
    requested_at: Instant,
    result: Result<AccessToken, Error>,
) -> Result<AccessToken, Error> {
    let mut state = lock(state);
    state.flight = None;
    match &result {
        Ok(token) => {
            state.held = Some(Held::new(token.clone(), requested_at, policy));
            state.failure = None;
        }
        Err(error) => {
            tracing::warn!(error = %error.with_causes(), "could not obtain an access token");
            state.failure = Some((Instant::now(), error.clone()));
        }
    }
    result
}

/// How long callers get `error` before the endpoint is asked again: the policy's hold-off, or
/// what the server asked for (`Retry-After`, RFC 9110 §10.2.3) if longer, up to
/// [`MAX_RETRY_AFTER`].
fn hold_off(policy: &Policy, error: &Error) -> Duration {
    error
        .retry_after()
        .map_or(Duration::ZERO, |asked| asked.min(MAX_RETRY_AFTER))
        .max(policy.retry_after_failure)
}

/// Whether less than `window` has passed from `since` to `now` (no overflow for huge windows).
fn elapsed_within(now: Instant, since: Instant, window: Duration) -> bool {
    now.saturating_duration_since(since) < window
}

/// The state, even if a panic elsewhere poisoned its lock: every change to it is one
/// assignment, never left half done.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use tokio::sync::Semaphore;
    use tokio::time::advance;

    use super::*;

    /// A token endpoint in memory: counts the requests started, answers `token-<n>` with the
    /// lifetime set, or fails; each answer waits for a permit of `gate`.
    struct Endpoint {
        requests: AtomicUsize,
        gate: Semaphore,
        lifetime: Mutex<Option<Duration>>,
        failing: Mutex<bool>,
        /// The `Retry-After` of its failures.
        retry_after: Mutex<Option<Duration>>,
    }

    impl Endpoint {
        fn new(lifetime: Option<Duration>) -> Arc<Self> {
            Arc::new(Self {
                requests: AtomicUsize::new(0),
                gate: Semaphore::new(1),
                lifetime: Mutex::new(lifetime),
                failing: Mutex::new(false),
                retry_after: Mutex::new(None),
            })
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn cache(self: &Arc<Self>) -> Cache {
            self.cache_with(Policy::default())
        }

        fn cache_with(self: &Arc<Self>, policy: Policy) -> Cache {
            let endpoint = Arc::clone(self);
            let fetch: Fetch = Arc::new(move || {
                // Counted when the request starts, so that a test can see it before it ends.
                let n = endpoint.requests.fetch_add(1, Ordering::SeqCst) + 1;
                let endpoint = Arc::clone(&endpoint);
                Box::pin(async move {
                    let _permit = endpoint.gate.acquire().await.unwrap();
                    if *endpoint.failing.lock().unwrap() {
                        return Err(Error::Status {
                            url: "https://idp.test/token".to_owned(),
                            status: 503,
                            retry_after: *endpoint.retry_after.lock().unwrap(),
                        });
                    }
                    let lifetime = *endpoint.lifetime.lock().unwrap();
                    Ok(AccessToken::new(&format!("token-{n}"), None, lifetime).unwrap())
                })
            });
            Cache::new(fetch, policy)
        }
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// Polls a future once, without waiting.
    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    async fn token(cache: &Cache) -> String {
        cache.token().await.unwrap().secret().to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_callers_shares_one_request() {
        let endpoint = Endpoint::new(Some(secs(300)));
        let cache = endpoint.cache();
        let closed = endpoint.gate.acquire().await.unwrap();
        let mut callers: Vec<_> = (0..100).map(|_| Box::pin(cache.token())).collect();
        for caller in &mut callers {
            assert!(poll_once(caller.as_mut()).is_pending());
        }
        assert_eq!(endpoint.requests(), 1);
        drop(closed);
        for caller in callers {
            assert_eq!(caller.await.unwrap().secret(), "token-1");
        }
        assert_eq!(token(&cache).await, "token-1");
        assert_eq!(endpoint.requests(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_reaches_every_waiter_and_is_not_retried_at_once() {
        let endpoint = Endpoint::new(Some(secs(300)));
        *endpoint.failing.lock().unwrap() = true;
        let cache = endpoint.cache();
        let closed = endpoint.gate.acquire().await.unwrap();
        let mut callers: Vec<_> = (0..100).map(|_| Box::pin(cache.token())).collect();
        for caller in &mut callers {
            assert!(poll_once(caller.as_mut()).is_pending());
        }
        drop(closed);
        for caller in callers {
            let error = caller.await.unwrap_err();
            assert!(
                matches!(error, Error::Status { status: 503, .. }),
                "{error:?}"
            );
        }
        assert_eq!(endpoint.requests(), 1);
        // Within the hold-off, callers get the same error without a request.
        advance(Duration::from_millis(900)).await;
        assert!(cache.token().await.is_err());
        assert_eq!(endpoint.requests(), 1);
        advance(Duration::from_millis(200)).await;
        *endpoint.failing.lock().unwrap() = false;
        assert_eq!(token(&cache).await, "token-2");
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_s_retry_after_holds_requests_off_that_long_up_to_five_minutes() {
        let endpoint = Endpoint::new(Some(secs(300)));
        *endpoint.failing.lock().unwrap() = true;
        *endpoint.retry_after.lock().unwrap() = Some(secs(30));
        let cache = endpoint.cache();
        assert!(cache.token().await.is_err());
        advance(secs(29)).await;
        let held = cache.token().await.unwrap_err();
        assert_eq!(held.retry_after(), Some(secs(30)));
        assert_eq!(endpoint.requests(), 1, "asked again before its Retry-After");
        advance(secs(2)).await;
        assert!(cache.token().await.is_err());
        assert_eq!(endpoint.requests(), 2);

        // A wait shorter than the client's own hold-off does not shorten it.
        *endpoint.retry_after.lock().unwrap() = Some(Duration::ZERO);
        advance(secs(31)).await;
        assert!(cache.token().await.is_err());
        assert_eq!(endpoint.requests(), 3);
        advance(Duration::from_millis(900)).await;
        assert!(cache.token().await.is_err());
        assert_eq!(endpoint.requests(), 3);

        // A day is taken as five minutes.
        *endpoint.retry_after.lock().unwrap() = Some(secs(86_400));
        advance(secs(1)).await;
        assert!(cache.token().await.is_err());
        assert_eq!(endpoint.requests(), 4);
        advance(secs(299)).await;
        assert!(cache.token().await.is_err());
        assert_eq!(endpoint.requests(), 4);
        advance(secs(2)).await;
        *endpoint.failing.lock().unwrap() = false;
        assert_eq!(token(&cache).await, "token-5");
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_is_kept_until_the_margin_before_it_expires() {
        let endpoint = Endpoint::new(Some(secs(300)));
        let cache = endpoint.cache();
        assert_eq!(token(&cache).await, "token-1");
        advance(secs(269)).await;
        assert_eq!(token(&cache).await, "token-1");
        assert_eq!(endpoint.requests(), 1);
        // 30 s before expiry: the held token still serves while its successor is fetched.
        advance(secs(2)).await;
        assert_eq!(token(&cache).await, "token-1");
        assert_eq!(endpoint.requests(), 2);
        cache.settled().await;
        assert_eq!(token(&cache).await, "token-2");
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lifetime_is_refreshed_halfway_through() {
        let endpoint = Endpoint::new(Some(secs(10)));
        let cache = endpoint.cache();
        assert_eq!(token(&cache).await, "token-1");
        advance(Duration::from_millis(4_900)).await;
        token(&cache).await;
        assert_eq!(endpoint.requests(), 1);
        advance(Duration::from_millis(200)).await;
        token(&cache).await;
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_expires_in_a_lifetime_of_five_minutes_is_assumed() {
        let endpoint = Endpoint::new(None);
        let cache = endpoint.cache();
        assert_eq!(token(&cache).await, "token-1");
        advance(secs(269)).await;
        token(&cache).await;
        assert_eq!(endpoint.requests(), 1);
        advance(secs(2)).await;
        token(&cache).await;
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lifetime_beyond_a_day_is_cut_to_a_day() {
        let endpoint = Endpoint::new(Some(Duration::from_secs(u64::MAX)));
        let cache = endpoint.cache();
        assert_eq!(token(&cache).await, "token-1");
        advance(MAX_LIFETIME - secs(31)).await;
        token(&cache).await;
        assert_eq!(endpoint.requests(), 1);
        advance(secs(2)).await;
        token(&cache).await;
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_without_lifetime_left_serves_only_its_waiters() {
        let endpoint = Endpoint::new(Some(Duration::ZERO));
        let cache = endpoint.cache();
        let closed = endpoint.gate.acquire().await.unwrap();
        let (mut first, mut second) = (Box::pin(cache.token()), Box::pin(cache.token()));
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        drop(closed);
        assert_eq!(first.await.unwrap().secret(), "token-1");
        assert_eq!(second.await.unwrap().secret(), "token-1");
        assert_eq!(token(&cache).await, "token-2");
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_token_is_never_handed_out() {
        let endpoint = Endpoint::new(Some(secs(60)));
        let cache = endpoint.cache();
        token(&cache).await;
        advance(secs(60)).await;
        let closed = endpoint.gate.acquire().await.unwrap();
        let mut caller = Box::pin(cache.token());
        assert!(poll_once(caller.as_mut()).is_pending());
        drop(closed);
        assert_eq!(caller.await.unwrap().secret(), "token-2");
    }

    #[tokio::test(start_paused = true)]
    async fn while_refreshing_ahead_callers_keep_the_valid_token_and_one_request_runs() {
        let endpoint = Endpoint::new(Some(secs(300)));
        let cache = endpoint.cache();
        token(&cache).await;
        advance(secs(280)).await;
        let closed = endpoint.gate.acquire().await.unwrap();
        for _ in 0..50 {
            assert_eq!(token(&cache).await, "token-1");
        }
        assert_eq!(endpoint.requests(), 2);
        drop(closed);
        cache.settled().await;
        assert_eq!(token(&cache).await, "token-2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_ahead_keeps_the_valid_token_and_waits_before_retrying() {
        let endpoint = Endpoint::new(Some(secs(300)));
        let cache = endpoint.cache();
        token(&cache).await;
        *endpoint.failing.lock().unwrap() = true;
        advance(secs(280)).await;
        assert_eq!(token(&cache).await, "token-1");
        cache.settled().await;
        assert_eq!(endpoint.requests(), 2);
        assert_eq!(token(&cache).await, "token-1");
        assert_eq!(endpoint.requests(), 2, "no retry within the hold-off");
        advance(secs(2)).await;
        assert_eq!(token(&cache).await, "token-1");
        assert_eq!(endpoint.requests(), 3);
        cache.settled().await;
        // Once it expires, the failure is the callers' answer.
        advance(secs(30)).await;
        assert!(cache.token().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_drops_only_the_token_it_names() {
        let endpoint = Endpoint::new(Some(secs(300)));
        let cache = endpoint.cache();
        let first = cache.token().await.unwrap();
        let other = AccessToken::new("token-elsewhere", None, None).unwrap();
        cache.invalidate(&other);
        assert_eq!(token(&cache).await, "token-1");
        cache.invalidate(&first);
        assert_eq!(token(&cache).await, "token-2");
        // The refused token, reported late, no longer drops anything.
        advance(secs(60)).await;
        cache.invalidate(&first);
        assert_eq!(token(&cache).await, "token-2");
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_concurrent_refusals_cost_one_new_token() {
        let endpoint = Endpoint::new(Some(secs(300)));
        // No cooldown: only the exact-token rule keeps this to one new token.
        let cache = endpoint.cache_with(Policy {
            invalidation_cooldown: Duration::ZERO,
            ..Policy::default()
        });
        let refused = cache.token().await.unwrap();
        let refusal = || async {
            cache.invalidate(&refused);
            cache.token().await
        };
        // 25 refusals while the new token is being fetched, 25 after it came.
        let closed = endpoint.gate.acquire().await.unwrap();
        let mut early: Vec<_> = (0..25).map(|_| Box::pin(refusal())).collect();
        for caller in &mut early {
            assert!(poll_once(caller.as_mut()).is_pending());
        }
        drop(closed);
        for caller in early {
            assert_eq!(caller.await.unwrap().secret(), "token-2");
        }
        for _ in 0..25 {
            assert_eq!(refusal().await.unwrap().secret(), "token-2");
        }
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_refusal_within_the_cooldown_keeps_the_token() {
        let endpoint = Endpoint::new(Some(secs(300)));
        let cache = endpoint.cache();
        let first = cache.token().await.unwrap();
        cache.invalidate(&first);
        let second = cache.token().await.unwrap();
        advance(secs(9)).await;
        cache.invalidate(&second);
        assert_eq!(cache.token().await.unwrap(), second);
        advance(secs(2)).await;
        cache.invalidate(&second);
        assert_eq!(token(&cache).await, "token-3");
    }

    #[test]
    fn outside_a_tokio_runtime_the_error_says_so() {
        let endpoint = Endpoint::new(Some(secs(300)));
        let cache = endpoint.cache();
        let mut caller = Box::pin(cache.token());
        match poll_once(caller.as_mut()) {
            Poll::Ready(Err(Error::NoRuntime)) => {}
            other => panic!("{other:?}"),
        }
    }
}

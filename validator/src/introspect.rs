//! Opaque tokens: asking the issuer's RFC 7662 introspection endpoint, with a cache so that an
//! API request is not a network round trip.

use std::fmt;
use std::future::Future as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;
use reqwest::Client;
use reqwest::header::HeaderValue;
use serde_json::Value;
use tokio::sync::Semaphore;
use url::Url;

use crate::claims::{self, ClaimRules};
use crate::clock::Clock;
use crate::discovery::IssuerMetadata;
use crate::error::{BuildError, Error, FetchError, InvalidToken, Unavailable};
use crate::http;
use crate::json;
use crate::metrics::IntrospectionMetrics;
use crate::principal::Principal;
use crate::source::IntrospectionSource;

/// A secret whose `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// How introspection answers are cached and how hard the endpoint may be asked.
#[derive(Debug, Clone)]
pub(crate) struct IntrospectionPolicy {
    pub(crate) capacity: u64,
    pub(crate) max_ttl: Duration,
    pub(crate) inactive_ttl: Duration,
    pub(crate) serve_stale: Option<Duration>,
    pub(crate) stale_retry: Duration,
    pub(crate) max_concurrent_calls: usize,
    pub(crate) max_response_bytes: usize,
}

impl Default for IntrospectionPolicy {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            max_ttl: Duration::from_secs(60),
            inactive_ttl: Duration::from_secs(10),
            serve_stale: None,
            stale_retry: Duration::from_secs(5),
            max_concurrent_calls: 32,
            max_response_bytes: 64 * 1024,
        }
    }
}

impl IntrospectionPolicy {
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.capacity == 0 {
            return Err(BuildError::new(
                "introspection_cache",
                "capacity must be more than 0",
            ));
        }
        if self.max_ttl.is_zero()
            || self.max_ttl > Duration::from_secs(24 * 3600)
            || self.inactive_ttl > self.max_ttl
        {
            return Err(BuildError::new(
                "introspection_cache",
                "needs 0 < max_ttl <= 1 day and inactive_ttl <= max_ttl",
            ));
        }
        if self
            .serve_stale
            .is_some_and(|bound| bound.is_zero() || bound > Duration::from_secs(3600))
        {
            return Err(BuildError::new(
                "introspection_serve_stale",
                "must be more than 0 and at most 1 hour",
            ));
        }
        if self.max_concurrent_calls == 0 {
            return Err(BuildError::new(
                "introspection_max_concurrent_calls",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

/// Where the introspection endpoint comes from.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    Configured(Url),
    Discovered(Arc<IssuerMetadata>),
    /// Answered in this process, on every request (no cache, no HTTP).
    InProcess(Arc<dyn IntrospectionSource>),
}

/// A cached answer about one token.
#[derive(Debug)]
struct Entry {
    answer: Result<Arc<Principal>, InvalidToken>,
    /// Clock time until which the answer is used without asking again.
    fresh_until: Duration,
    /// Clock time until which an active answer may stand in while the endpoint is down.
    stale_until: Duration,
    /// How long moka keeps it in memory (real time).
    memory_lifetime: Duration,
}

struct EntryLifetime;

impl Expiry<[u8; 32], Arc<Entry>> for EntryLifetime {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        entry: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(entry.memory_lifetime)
    }
}

pub(crate) struct Introspector {
    endpoint: Endpoint,
    client_id: String,
    authorization: HeaderValue,
    http: Client,
    clock: Arc<dyn Clock>,
    rules: ClaimRules,
    policy: IntrospectionPolicy,
    cache: Cache<[u8; 32], Arc<Entry>>,
    calls: Semaphore,
    metrics: IntrospectionMetrics,
}

impl fmt::Debug for Introspector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Introspector")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    pub(crate) fn new(
        endpoint: Endpoint,
        client_id: String,
        client_secret: &Secret,
        http: Client,
        clock: Arc<dyn Clock>,
        rules: ClaimRules,
        policy: IntrospectionPolicy,
    ) -> Result<Self, BuildError> {
        let mut authorization =
            HeaderValue::from_str(&basic_authorization(&client_id, &client_secret.0))
                .map_err(|_| BuildError::new("introspection", "credentials do not fit a header"))?;
        authorization.set_sensitive(true);
        let cache = Cache::builder()
            .max_capacity(policy.capacity)
            .expire_after(EntryLifetime)
            .build();
        let calls = Semaphore::new(policy.max_concurrent_calls);
        Ok(Self {
            endpoint,
            client_id,
            authorization,
            http,
            clock,
            metrics: IntrospectionMetrics::register(&rules.issuer),
            rules,
            policy,
            cache,
            calls,
        })
    }

    /// An introspector whose answers come from `source` in this process.
    pub(crate) fn in_process(
        source: Arc<dyn IntrospectionSource>,
        clock: Arc<dyn Clock>,
        rules: ClaimRules,
        policy: IntrospectionPolicy,
    ) -> Self {
        Self {
            endpoint: Endpoint::InProcess(source),
            client_id: String::new(),
            authorization: HeaderValue::from_static(""),
            http: Client::new(),
            clock,
            cache: Cache::builder().max_capacity(1).build(),
            calls: Semaphore::new(policy.max_concurrent_calls),
            policy,
            metrics: IntrospectionMetrics::register(&rules.issuer),
            rules,
        }
    }

    /// Asks (or remembers) whether the issuer considers `token` active, and for whom; `digest`
    /// is the token's [`token_digest`].
    pub(crate) async fn introspect(
        &self,
        token: &str,
        digest: &TokenDigest,
    ) -> Result<Arc<Principal>, Error> {
        if let Endpoint::InProcess(source) = &self.endpoint {
            let _permit = self.calls.acquire().await.map_err(|_| {
                self.unavailable(FetchError::InProcess {
                    what: "introspection source",
                    message: "shutting down".to_owned(),
                })
            })?;
            let call = self.metrics.call();
            let verdict = match source.introspect(token).await {
                Ok(answer) => verdict(answer, &self.rules, self.clock.now()).map_err(|problem| {
                    FetchError::InProcess {
                        what: "introspection source",
                        message: problem.to_owned(),
                    }
                }),
                Err(error) => Err(error),
            };
            call.answered(verdict.as_ref().ok().map(Result::is_ok));
            return verdict
                .map_err(|error| self.unavailable(error))?
                .map_err(Error::from);
        }
        let endpoint = self.endpoint().await?;
        let endpoint = &endpoint;
        let key = cache_key(endpoint, digest);
        let cached = self.cache.get(&key).await;
        if let Some(entry) = &cached
            && self.clock.now() < entry.fresh_until
        {
            self.metrics.cache_hit.increment(1);
            return entry.answer.clone().map_err(Error::from);
        }
        self.metrics.cache_miss.increment(1);
        if let Some(stale) = &cached {
            // Past its time by our clock. Remove it only if it is still the entry we saw: one
            // that another request put there meanwhile stays, and answers us below.
            let stale = Arc::clone(stale);
            self.cache
                .entry(key)
                .and_compute_with(|current| async move {
                    match current {
                        Some(current) if Arc::ptr_eq(current.value(), &stale) => Op::Remove,
                        _ => Op::Nop,
                    }
                })
                .await;
        }
        match self.ask(key, token, endpoint).await {
            Ok(entry) => entry.answer.clone().map_err(Error::from),
            Err(unavailable) => {
                // Read the clock again: the call may have waited a while.
                let now = self.clock.now();
                if let Some(entry) = self.cache.get(&key).await
                    && now < entry.fresh_until
                {
                    return entry.answer.clone().map_err(Error::from);
                }
                match cached.and_then(|entry| self.serve_stale(&entry, now)) {
                    Some(stand_in) => {
                        tracing::warn!(error = %unavailable, "introspection unavailable; serving a cached active answer");
                        self.cache.insert(key, Arc::clone(&stand_in)).await;
                        stand_in.answer.clone().map_err(Error::from)
                    }
                    None => Err(unavailable.into()),
                }
            }
        }
    }

    /// A fresh, active cached answer for `token`, without waiting: the cache lookup is polled
    /// once (it completes at once unless the cache is doing housekeeping, which counts as a
    /// miss).
    pub(crate) fn peek(&self, digest: &TokenDigest) -> Option<Arc<Principal>> {
        let discovered;
        let endpoint = match &self.endpoint {
            Endpoint::Configured(url) => url,
            Endpoint::Discovered(metadata) => {
                discovered = metadata.known()?;
                discovered.introspection_endpoint.as_ref()?
            }
            // Never cached: always asked.
            Endpoint::InProcess(_) => return None,
        };
        let key = cache_key(endpoint, digest);
        let lookup = std::pin::pin!(self.cache.get(&key));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Some(entry)) = lookup.poll(&mut context) else {
            return None;
        };
        if self.clock.now() >= entry.fresh_until {
            return None;
        }
        // Only an active answer is a hit here: an inactive one is answered by `introspect`,
        // which counts it there.
        let principal = entry.answer.as_ref().ok().map(Arc::clone)?;
        self.metrics.cache_hit.increment(1);
        Some(principal)
    }

    /// With serve-stale on, an active answer still within its bound stands in for a few
    /// seconds before the endpoint is tried again, never past the bound (itself never past
    /// `exp`). Inactive answers are never served stale.
    fn serve_stale(&self, entry: &Entry, now: Duration) -> Option<Arc<Entry>> {
        self.policy.serve_stale?;
        let principal = entry.answer.as_ref().ok()?;
        if now >= entry.stale_until {
            return None;
        }
        Some(Arc::new(Entry {
            answer: Ok(Arc::clone(principal)),
            fresh_until: (now + self.policy.stale_retry).min(entry.stale_until),
            stale_until: entry.stale_until,
            memory_lifetime: entry.stale_until.saturating_sub(now),
        }))
    }

    /// The cached entry for `key`, or one call to the endpoint shared by every concurrent
    /// caller. Failures are returned to all of them and never cached.
    async fn ask(
        &self,
        key: [u8; 32],
        token: &str,
        endpoint: &Url,
    ) -> Result<Arc<Entry>, Unavailable> {
        let called = AtomicBool::new(false);
        let entry = self
            .cache
            .try_get_with(key, async {
                called.store(true, Ordering::Relaxed);
                self.call(token, endpoint).await.map(Arc::new)
            })
            .await
            .map_err(|error| (*error).clone());
        if !called.load(Ordering::Relaxed) {
            // Another request's call answered this one (or had just cached its answer).
            self.metrics.coalesced.increment(1);
        }
        entry
    }

    async fn call(&self, token: &str, endpoint: &Url) -> Result<Entry, Unavailable> {
        let _permit = self.calls.acquire().await.map_err(|_| {
            self.unavailable(FetchError::InvalidDocument {
                url: endpoint.to_string(),
                problem: "introspection is shutting down".to_owned(),
            })
        })?;
        let call = self.metrics.call();
        let entry = self.call_endpoint(token, endpoint).await;
        call.answered(
            entry
                .as_ref()
                .ok()
                .map(|entry: &Entry| entry.answer.is_ok()),
        );
        entry
    }

    /// One call to the endpoint, its answer read into a cache entry.
    async fn call_endpoint(&self, token: &str, endpoint: &Url) -> Result<Entry, Unavailable> {
        let form = [("token", token), ("token_type_hint", "access_token")];
        let body = http::post_form(
            &self.http,
            endpoint,
            &self.authorization,
            &form,
            self.policy.max_response_bytes,
        )
        .await
        .map_err(|error| {
            if let FetchError::Status { status: 401 | 403, .. } = error {
                tracing::error!(client_id = %self.client_id, "the introspection endpoint refused this API's credentials");
            }
            self.unavailable(error)
        })?;
        let now = self.clock.now();
        let answer = self.read_answer(endpoint, &body, now)?;
        let fresh_until = match &answer {
            Ok(principal) => {
                let limit = now + self.policy.max_ttl;
                principal
                    .expires_at
                    .get()
                    .map_or(limit, |exp| exp.min(limit))
            }
            Err(_) => now + self.policy.inactive_ttl,
        };
        let stale_until = match (&answer, self.policy.serve_stale) {
            (Ok(principal), Some(bound)) => {
                let limit = fresh_until + bound;
                principal
                    .expires_at
                    .get()
                    .map_or(limit, |exp| exp.min(limit))
            }
            _ => fresh_until,
        };
        Ok(Entry {
            answer,
            fresh_until,
            stale_until,
            memory_lifetime: stale_until.saturating_sub(now),
        })
    }

    /// RFC 7662 §2.2: `active` is a boolean; anything not active is invalid whatever else the
    /// answer says; an active answer's claims are checked like a JWT's.
    fn read_answer(
        &self,
        endpoint: &Url,
        body: &[u8],
        now: Duration,
    ) -> Result<Result<Arc<Principal>, InvalidToken>, Unavailable> {
        let invalid = |problem: String| FetchError::InvalidDocument {
            url: endpoint.to_string(),
            problem,
        };
        let answer =
            json::parse_object(body).map_err(|problem| self.unavailable(invalid(problem)))?;
        verdict(answer, &self.rules, now)
            .map_err(|problem| self.unavailable(invalid(problem.to_owned())))
    }

    async fn endpoint(&self) -> Result<Url, Unavailable> {
        match &self.endpoint {
            Endpoint::Configured(url) => Ok(url.clone()),
            Endpoint::InProcess(_) => Err(self.unavailable(FetchError::InProcess {
                what: "introspection source",
                message: "has no URL".to_owned(),
            })),
            Endpoint::Discovered(metadata) => {
                let found = metadata
                    .get()
                    .await
                    .map_err(|error| self.unavailable(error))?;
                found.introspection_endpoint.clone().ok_or_else(|| {
                    self.unavailable(FetchError::InvalidDocument {
                        url: metadata.issuer().to_owned(),
                        problem: "the issuer metadata has no `introspection_endpoint`".to_owned(),
                    })
                })
            }
        }
    }

    fn unavailable(&self, error: FetchError) -> Unavailable {
        Unavailable::new("introspection", self.policy.stale_retry, error)
    }

    /// Forgets the cached answer for the token with this digest (a revoked one), at the
    /// endpoint in use now.
    pub(crate) async fn evict(&self, digest: &TokenDigest) {
        let endpoint = match &self.endpoint {
            Endpoint::Configured(url) => url.clone(),
            Endpoint::Discovered(metadata) => {
                match metadata
                    .known()
                    .and_then(|known| known.introspection_endpoint.clone())
                {
                    Some(url) => url,
                    // Never discovered: nothing was asked, so nothing is cached.
                    None => return,
                }
            }
            Endpoint::InProcess(_) => return,
        };
        self.cache.invalidate(&cache_key(&endpoint, digest)).await;
    }

    pub(crate) async fn cached_entries(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

/// An answer's verdict: RFC 7662 §2.2 `active`, then the claims of an active one, checked
/// like a JWT's. `Err` for an answer that is not one (no verdict can be read from it).
pub(crate) fn verdict(
    mut answer: serde_json::Map<String, Value>,
    rules: &ClaimRules,
    now: Duration,
) -> Result<Result<Arc<Principal>, InvalidToken>, &'static str> {
    match answer.remove("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Err(InvalidToken::Inactive)),
        Some(_) => return Err("`active` is not a boolean"),
        None => return Err("no `active` member"),
    }
    // An authorization server that reports on refresh tokens must not get them accepted
    // as access tokens.
    if let Some(Value::String(token_type)) = answer.get("token_type")
        && (token_type.eq_ignore_ascii_case("refresh_token")
            || token_type == "urn:ietf:params:oauth:token-type:refresh_token")
    {
        return Ok(Err(InvalidToken::Inactive));
    }
    Ok(claims::check_answer(&answer, rules, now).map(Arc::new))
}

/// SHA-256 of a token: what a revocation event names an opaque token by (unpadded base64url),
/// and what the introspection cache key is made from.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn token_digest(token: &str) -> TokenDigest {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    digest
}

/// The cache key: the endpoint and the token together, so an answer from one issuer never
/// stands for another's; hashed, so the cache never holds a usable token. Made from the token's
/// digest, so that a revocation event naming the digest finds the entry to evict.
fn cache_key(endpoint: &Url, digest: &TokenDigest) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(endpoint.as_str().as_bytes());
    context.update(&[0]);
    context.update(digest);
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// RFC 6749 §2.3.1: id and secret are form-encoded before they are joined with `:`, so that a
/// `:` `+` or `%` inside either survives.
pub(crate) fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let encode =
        |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", STANDARD.encode(credentials))
}

/// Whether `token` has the RFC 6750 §2.1 `b64token` syntax:
/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. Anything else cannot be a
/// bearer token and is refused without asking the issuer.
pub(crate) fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    // Every byte of a chunk is judged without stopping early, so the compiler checks 16 or 32
    // bytes at a time: the whole token is scanned on every uncached call.
    !body.is_empty()
        && body.as_bytes().chunks(32).all(|chunk| {
            chunk
                .iter()
                .fold(true, |valid, &byte| valid & is_b64token_byte(byte))
        })
}

/// The bytes RFC 6750 §2.1 allows in a `b64token` before its trailing `=`s; comparisons, which
/// vectorise where a table lookup does not.
fn is_b64token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() | matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let header = basic_authorization("api:one+two", "s%cr:t +x");
        let encoded = header.strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "api%3Aone%2Btwo:s%25cr%3At+%2Bx");
    }

    #[test]
    fn bearer_token_syntax_is_checked() {
        assert!(is_b64token("abc-DEF_123.~+/=="));
        assert!(!is_b64token(""));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("has space"));
        assert!(!is_b64token("quote\""));
        assert!(!is_b64token("é"));
        assert!(!is_b64token("a=b"));
        for byte in 0..=u8::MAX {
            let allowed = byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte);
            let token = [b'a', byte, b'b'];
            let token = String::from_utf8_lossy(&token);
            assert_eq!(is_b64token(&token), allowed, "byte {byte}");
        }
    }

    #[test]
    fn cache_keys_differ_per_endpoint() {
        let one = Url::parse("https://a.test/introspect").unwrap();
        let two = Url::parse("https://b.test/introspect").unwrap();
        let token = token_digest("token");
        assert_ne!(cache_key(&one, &token), cache_key(&two, &token));
        assert_eq!(cache_key(&one, &token), cache_key(&one, &token));
        assert_ne!(
            cache_key(&one, &token),
            cache_key(&one, &token_digest("other"))
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret("hunter2".to_owned())), "[redacted]");
    }
}

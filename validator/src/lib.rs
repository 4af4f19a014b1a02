#![doc = include_str!("../README.md")]

mod algorithm;
mod claims;
mod clock;
mod config;
mod discovery;
pub mod dpop;
mod error;
mod events;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod interned;
mod introspect;
mod issuers;
mod json;
mod jwk;
mod jwks;
mod jws;
mod metrics;
mod principal;
pub mod scope;
mod source;
mod token_type;
mod verified;

#[cfg(test)]
mod wycheproof;

use std::sync::Arc;
use std::time::Duration;

pub use algorithm::{Algorithm, UnsupportedAlgorithm};
pub use clock::{Clock, MockClock, SystemClock};
pub use config::ValidatorBuilder;
pub use error::{BuildError, Error, FetchError, InvalidToken, Unavailable};
pub use events::RevocationStreamStatus;
pub use principal::Principal;
pub use scope::{Requirement, Scope, ScopeSet};
pub use source::{BoxFuture, IntrospectionSource, KeySource};

use crate::claims::ClaimRules;
use crate::jws::{TokenShape, UntrustedJws};
use crate::verified::VerifiedTokens;

/// Turns bearer tokens into verified [`Principal`]s.
///
/// Cheap to clone (one `Arc`); share one per issuer across the whole application so that every
/// request uses the same key cache and verified-token cache. Several issuers behind one
/// validator: [`Validator::for_issuers`].
#[derive(Clone, Debug)]
pub struct Validator {
    trust: Arc<Trust>,
}

/// Whom a validator trusts.
#[derive(Debug)]
enum Trust {
    One(Inner),
    Many(issuers::IssuerSet),
}

#[derive(Debug)]
struct Inner {
    rules: ClaimRules,
    algorithms: Vec<Algorithm>,
    token_type: token_type::TypeRule,
    max_token_bytes: usize,
    verified: VerifiedTokens,
    jwks: Arc<jwks::JwksCache>,
    introspector: Option<Arc<introspect::Introspector>>,
    introspect_jwts: bool,
    clock: Arc<dyn Clock>,
    /// The subscription to the issuer's revocation events, when enabled; its task ends when
    /// this is dropped.
    events: Option<events::Subscription>,
}

impl Inner {
    /// Whether a verified principal may pass the revocation events: not revoked, and the
    /// stream not blind beyond its bound. Free when no subscription is configured.
    fn admit(&self, principal: &Principal) -> Result<(), Error> {
        match &self.events {
            None => Ok(()),
            Some(subscription) => subscription
                .revocations()
                .admit(principal, self.clock.as_ref()),
        }
    }

    /// Whether revocation events name this opaque token.
    fn revoked_digest(&self, digest: &introspect::TokenDigest) -> bool {
        self.events
            .as_ref()
            .is_some_and(|subscription| subscription.revocations().refuses_digest(digest))
    }
}

impl Validator {
    /// Starts a configuration. See [`ValidatorBuilder`].
    pub fn builder() -> ValidatorBuilder {
        ValidatorBuilder::default()
    }

    fn from_parts(inner: Inner) -> Self {
        Self {
            trust: Arc::new(Trust::One(inner)),
        }
    }

    /// One validator for several trusted issuers, each built on its own (its audiences,
    /// algorithms, `typ`, introspection credentials, leeway, scope claim). A JWT goes to the
    /// validator of the issuer its `iss` names — and is verified there with that issuer's keys,
    /// so a token signed by one issuer claiming another's name fails — while a name not listed
    /// is refused without any network call. Opaque tokens are introspected at the issuers that
    /// introspect, in the order given: the first active answer wins; none active is inactive,
    /// unless an issuer could not be asked (then *unavailable*).
    ///
    /// ```
    /// use scopegate_validator::{Algorithm, Validator};
    ///
    /// let ours = Validator::builder()
    ///     .issuer("https://login.example.com")
    ///     .audience("https://api.example.com")
    ///     .algorithms([Algorithm::ES256])
    ///     .build()?;
    /// let partner = Validator::builder()
    ///     .issuer("https://login.microsoftonline.com/9188040d/v2.0")
    ///     .audience("api://orders")
    ///     .algorithms([Algorithm::RS256])
    ///     .scope_claim("roles") // Entra ID application permissions
    ///     .build()?;
    /// let validator = Validator::for_issuers([ours, partner])?;
    /// assert_eq!(validator.issuers().len(), 2);
    /// # Ok::<(), scopegate_validator::BuildError>(())
    /// ```
    ///
    /// # Errors
    /// [`BuildError`] for an empty list, a set inside the list, or an issuer listed twice.
    pub fn for_issuers(
        validators: impl IntoIterator<Item = Validator>,
    ) -> Result<Self, BuildError> {
        let set = issuers::IssuerSet::new(validators.into_iter().collect())?;
        Ok(Self {
            trust: Arc::new(Trust::Many(set)),
        })
    }

    /// The configured issuer; for several, the first listed.
    #[must_use]
    pub fn issuer(&self) -> &str {
        match &*self.trust {
            Trust::One(inner) => &inner.rules.issuer,
            Trust::Many(set) => set.ordered()[0].issuer(),
        }
    }

    /// Every trusted issuer, in configured order.
    #[must_use]
    pub fn issuers(&self) -> Vec<&str> {
        match &*self.trust {
            Trust::One(inner) => vec![&*inner.rules.issuer],
            Trust::Many(set) => set.ordered().iter().map(Validator::issuer).collect(),
        }
    }

    /// Whether this validator trusts one issuer (not a set).
    pub(crate) fn is_single(&self) -> bool {
        matches!(&*self.trust, Trust::One(_))
    }

    /// Whether opaque tokens are introspected (a single issuer with introspection configured).
    pub(crate) fn introspects(&self) -> bool {
        matches!(&*self.trust, Trust::One(inner) if inner.introspector.is_some())
    }

    /// Verifies a bearer token and returns who it speaks for.
    ///
    /// # Errors
    /// - [`Error::NoToken`] for an empty token;
    /// - [`Error::InvalidToken`] for anything forged, malformed, expired, or meant for another
    ///   issuer or audience, and ([`InvalidToken::Revoked`]) for a token a revocation event
    ///   names;
    /// - [`Error::Unavailable`] when the issuer's keys or its introspection endpoint cannot be
    ///   reached, or its revocation event stream has failed for longer than
    ///   [`ValidatorBuilder::revocation_events_max_blind`].
    ///
    /// A token shaped like a JWT (three segments) is verified locally; any other token goes to
    /// the introspection endpoint when one is configured, and is invalid otherwise.
    ///
    /// # Security
    /// Follows RFC 8725: the algorithm must be allowed by configuration *and* by the key;
    /// `none` and HMAC are never accepted; `jku`, `jwk`, `x5u`, `x5c` and `crit` headers reject
    /// the token; duplicate JSON members reject it; `iss` must match exactly, `aud` must
    /// contain a configured audience, `exp` is required.
    ///
    /// ```
    /// use scopegate_validator::{Algorithm, Error, Validator};
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc_issuer.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let token = issuer.token("https://api.example.com", "openid");
    /// # let elsewhere = issuer.token("https://other.example.com", "openid");
    /// let validator = Validator::builder()
    ///     .issuer("https://idp.example.com")
    ///     .audience("https://api.example.com")
    ///     .algorithms([Algorithm::ES256])
    /// #   .key_source(issuer.keys()) // the examples' issuer lives in this process
    ///     .build()?;
    /// let principal = validator.validate(&token).await?;
    /// assert_eq!(principal.subject(), Some("jane"));
    /// assert!(matches!(validator.validate(&elsewhere).await, Err(Error::InvalidToken(_))));
    /// assert!(matches!(validator.validate("").await, Err(Error::NoToken)));
    /// # Ok(()) }
    /// ```
    pub async fn validate(&self, token: &str) -> Result<Arc<Principal>, Error> {
        let inner = match &*self.trust {
            Trust::One(inner) => inner,
            Trust::Many(set) => {
                // The warm path without a future; the rest boxed, as the set calls back into
                // `validate` of the issuer it picks.
                if let Some(principal) = set.warm(token) {
                    return Ok(principal);
                }
                return Box::pin(set.validate(token)).await;
            }
        };
        if token.is_empty() {
            return Err(Error::NoToken);
        }
        if token.len() > inner.max_token_bytes {
            return Err(InvalidToken::TooLarge {
                size: token.len(),
                max: inner.max_token_bytes,
            }
            .into());
        }
        // The hot path first: a JWT verified before. Everything slower is boxed so that this
        // future stays small; it is built and moved on every request.
        let hash = (inner.verified.is_enabled() && token.contains('.'))
            .then(|| verified::token_hash(token));
        let cached = hash
            .as_ref()
            .and_then(|hash| Self::cached_jwt(inner, hash, token));
        let principal = match cached {
            Some(principal) => {
                if let Err(refusal) = inner.admit(&principal) {
                    // A revoked token is not answered from the cache again.
                    if let (Error::InvalidToken(_), Some(hash)) = (&refusal, &hash) {
                        inner.verified.remove(hash);
                    }
                    return Err(refusal);
                }
                inner.verified.count_hit();
                principal
            }
            None => {
                let Some(segments) = jws::three_segments(token) else {
                    // A JWS's syntax is judged by `verify_jwt`, in the same parse.
                    if !introspect::is_b64token(token) {
                        return Err(InvalidToken::NotBearerSyntax.into());
                    }
                    return match &inner.introspector {
                        Some(introspector) => {
                            Box::pin(Self::introspect_opaque(inner, introspector, token)).await
                        }
                        None if jws::shape(token) == TokenShape::Jwe => {
                            Err(InvalidToken::Encrypted.into())
                        }
                        None => Err(InvalidToken::NotAJwt.into()),
                    };
                };
                Box::pin(Self::verify_jwt(inner, token, segments, hash)).await?
            }
        };
        if inner.introspect_jwts
            && let Some(introspector) = &inner.introspector
        {
            let digest = introspect::token_digest(token);
            Box::pin(introspector.introspect(token, &digest)).await?;
        }
        Ok(principal)
    }

    /// An opaque token: refused at once when a revocation event names its digest, otherwise
    /// introspected and its principal admitted like a JWT's.
    async fn introspect_opaque(
        inner: &Inner,
        introspector: &introspect::Introspector,
        token: &str,
    ) -> Result<Arc<Principal>, Error> {
        let digest = introspect::token_digest(token);
        if inner.revoked_digest(&digest) {
            return Err(InvalidToken::Revoked("the token was revoked").into());
        }
        let principal = introspector.introspect(token, &digest).await?;
        inner.admit(&principal)?;
        Ok(principal)
    }

    /// The principal for `token` if its answer is cached and fresh — a JWT verified before, or
    /// an opaque token whose introspection answer is cached — without waiting for anything.
    /// `None` means "not known yet": call [`validate`](Self::validate), which gives the answer.
    ///
    /// Lets a middleware take a fast path without allocating a future.
    #[must_use]
    pub fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        let inner = match &*self.trust {
            Trust::One(inner) => inner,
            Trust::Many(set) => return set.cached(token),
        };
        if token.is_empty() || token.len() > inner.max_token_bytes {
            return None;
        }
        if token.contains('.') {
            // Only a JWS was ever verified: a hit needs no shape check.
            let hit = inner
                .verified
                .is_enabled()
                .then(|| Self::cached_verified(inner, &verified::token_hash(token), token));
            if let Some(principal) = hit.flatten() {
                return Some(principal);
            }
            if jws::shape(token) == TokenShape::Jws {
                return None;
            }
        }
        let introspector = inner.introspector.as_ref()?;
        let digest = introspect::token_digest(token);
        if inner.revoked_digest(&digest) {
            return None;
        }
        let principal = introspector.peek(&digest)?;
        inner.admit(&principal).ok()?;
        Some(principal)
    }

    /// [`cached`](Self::cached) for a JWT whose hash the caller has already computed (a set of
    /// issuers, which keys its routing hints by the same hash).
    pub(crate) fn cached_jwt_hashed(
        &self,
        hash: &verified::TokenHash,
        token: &str,
    ) -> Option<Arc<Principal>> {
        match &*self.trust {
            Trust::One(inner) if inner.verified.is_enabled() => {
                Self::cached_verified(inner, hash, token)
            }
            _ => None,
        }
    }

    /// A verified-token cache hit that still stands — not revoked, introspection included
    /// when JWTs are introspected too.
    fn cached_verified(
        inner: &Inner,
        hash: &verified::TokenHash,
        token: &str,
    ) -> Option<Arc<Principal>> {
        let principal = Self::cached_jwt(inner, hash, token)?;
        inner.admit(&principal).ok()?;
        if inner.introspect_jwts {
            inner
                .introspector
                .as_ref()?
                .peek(&introspect::token_digest(token))?;
        }
        inner.verified.count_hit();
        Some(principal)
    }

    /// A verified-token cache hit, if the token has not expired and its key is still published
    /// in a fresh key set.
    fn cached_jwt(
        inner: &Inner,
        hash: &verified::TokenHash,
        token: &str,
    ) -> Option<Arc<Principal>> {
        let hit = inner.verified.get(hash, token)?;
        let now = inner.clock.now();
        let unexpired = hit
            .principal
            .expires_at
            .get()
            .is_some_and(|exp| now < exp.saturating_add(inner.rules.leeway));
        if !unexpired {
            // Nothing evicts by time: an expired token's entry goes when it is next presented.
            inner.verified.remove(hash);
            return None;
        }
        inner
            .jwks
            .fresh_set_holds(hit.key_fingerprint, now)
            .then_some(hit.principal)
    }

    /// The JWT path: full local verification, remembered in the verified-token cache.
    async fn verify_jwt<'a>(
        inner: &Inner,
        token: &'a str,
        segments: [&'a str; 3],
        hash: Option<verified::TokenHash>,
    ) -> Result<Arc<Principal>, Error> {
        if hash.is_some() {
            inner.verified.count_miss();
        }
        // Checked once, on the way in: a cached token is byte for byte one that passed. A token
        // that parses is three base64url segments and two dots, all `b64token` bytes, so that
        // scan runs only to name what a token that does not parse broke first.
        let jws =
            UntrustedJws::from_segments(token, segments, &inner.algorithms).map_err(|error| {
                if introspect::is_b64token(token) {
                    error
                } else {
                    InvalidToken::NotBearerSyntax
                }
            })?;
        inner.token_type.check_header(jws.header.typ.as_deref())?;
        let key_fingerprint = inner.jwks.verify(&jws).await?;
        // A key fetch may have taken a while: judge the claims by the time now.
        let now = inner.clock.now();
        let signed = jws.signing_input();
        let (header, payload) = jws.into_header_and_payload();
        let (principal, marks) = claims::check_jwt(signed, &payload, &inner.rules, now)?;
        // What a cache hit relies on: the kept claim set encodes back to this very payload
        // (strict decoding and the hit's encoding are the same `jws::SEGMENTS`).
        debug_assert!(principal.claims.is_signed_part(signed));
        inner
            .token_type
            .check_claims(header.typ.as_deref(), marks)?;
        let principal = Arc::new(principal);
        // Refused before it is cached: a revoked token never enters the cache.
        inner.admit(&principal)?;
        if let Some(hash) = hash {
            inner
                .verified
                .insert(hash, Arc::clone(&principal), key_fingerprint, now);
        }
        Ok(principal)
    }

    /// Verifies a token and checks it against a route's requirement for `method`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate), plus [`Error::InsufficientScope`].
    pub async fn authorize(
        &self,
        token: &str,
        requirement: &Requirement,
        method: &str,
    ) -> Result<Arc<Principal>, Error> {
        let principal = self.validate(token).await?;
        principal.check(requirement, method)?;
        Ok(principal)
    }

    /// Fetches the issuer's key set now, e.g. at start-up so the first request does not wait.
    /// Returns the number of usable keys.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when discovery or the JWKS fetch fails.
    /// With several issuers, every issuer's keys: the total, or the first failure once all were
    /// tried.
    pub async fn refresh_keys(&self) -> Result<usize, Error> {
        match &*self.trust {
            Trust::One(inner) => inner.jwks.refresh().await,
            Trust::Many(set) => {
                let (mut total, mut failure) = (0, None);
                for validator in set.ordered() {
                    match Box::pin(validator.refresh_keys()).await {
                        Ok(count) => total += count,
                        Err(error) => {
                            failure.get_or_insert(error);
                        }
                    }
                }
                failure.map_or(Ok(total), Err)
            }
        }
    }

    /// How many entries the caches hold now (after pending evictions), for metrics; with
    /// several issuers, summed.
    pub async fn cache_stats(&self) -> CacheStats {
        match &*self.trust {
            Trust::One(inner) => {
                let introspection_answers = match &inner.introspector {
                    Some(introspector) => introspector.cached_entries().await,
                    None => 0,
                };
                CacheStats {
                    verified_tokens: inner.verified.len(),
                    introspection_answers,
                }
            }
            Trust::Many(set) => {
                let mut total = CacheStats {
                    verified_tokens: 0,
                    introspection_answers: 0,
                };
                for validator in set.ordered() {
                    let stats = Box::pin(validator.cache_stats()).await;
                    total.verified_tokens += stats.verified_tokens;
                    total.introspection_answers += stats.introspection_answers;
                }
                total
            }
        }
    }

    /// The state of the revocation event stream of each issuer subscribed to it (see
    /// [`ValidatorBuilder::revocation_events`]), in configured order; empty when none is.
    ///
    /// For health checks and metrics: whether the stream is connected, since when it is not,
    /// whether tokens are *unavailable* because of it, and what it delivered.
    #[must_use]
    pub fn revocation_stream_status(&self) -> Vec<RevocationStreamStatus> {
        match &*self.trust {
            Trust::One(inner) => inner
                .events
                .iter()
                .map(|subscription| subscription.revocations().status(inner.clock.now()))
                .collect(),
            Trust::Many(set) => set
                .ordered()
                .iter()
                .flat_map(Validator::revocation_stream_status)
                .collect(),
        }
    }

    /// The clock this validator judges time by (the one given to
    /// [`ValidatorBuilder::clock`], else the system clock); with several issuers, the first's.
    /// Other checks of the same request — a DPoP proof's `iat` — use it too, so that one
    /// injected clock moves them all.
    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        match &*self.trust {
            Trust::One(inner) => &*inner.clock,
            Trust::Many(set) => set.ordered()[0].clock(),
        }
    }

    /// The leeway applied to time claims; with several issuers, the largest.
    #[must_use]
    pub fn leeway(&self) -> Duration {
        match &*self.trust {
            Trust::One(inner) => inner.rules.leeway,
            Trust::Many(set) => set
                .ordered()
                .iter()
                .map(Validator::leeway)
                .max()
                .unwrap_or_default(),
        }
    }
}

/// Entry counts of a validator's caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Tokens verified once and not verified cryptographically again until they expire.
    pub verified_tokens: u64,
    /// Cached introspection answers, active and inactive.
    pub introspection_answers: u64,
}

#[cfg(test)]
mod assertions {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn public_types_are_send_sync_clone() {
        assert_send_sync_clone::<super::Validator>();
        assert_send_sync_clone::<super::Principal>();
        assert_send_sync_clone::<super::RevocationStreamStatus>();
        assert_send_sync_clone::<super::Scope>();
        assert_send_sync_clone::<super::ScopeSet>();
        assert_send_sync_clone::<super::Requirement>();
        assert_send_sync_clone::<super::dpop::DpopVerifier>();
        assert_send_sync_clone::<super::dpop::DpopNonces>();
        assert_send_sync_clone::<super::dpop::ReplayCache>();
        assert_send_sync_clone::<super::dpop::ExternalOrigin>();
    }
}

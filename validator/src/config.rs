//! `Validator::builder()`: every setting checked at `build()`, defaults that fail closed.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::Validator;
use crate::algorithm::Algorithm;
use crate::claims::ClaimRules;
use crate::clock::{Clock, SystemClock};
use crate::discovery::IssuerMetadata;
use crate::error::BuildError;
use crate::events::{EventsPolicy, PollSource, Revocations, SetRules, Subscriber, Subscription};
use crate::http::{self, checked_url};
use crate::introspect::{Endpoint, IntrospectionPolicy, Introspector, Secret, basic_authorization};
use crate::jwks::{JwksCache, JwksPolicy, JwksSource};
use crate::metrics::{self, JwksMetrics, VerifiedCacheMetrics};
use crate::source::{IntrospectionSource, KeySource};
use crate::token_type::{TypeRule, normalize_typ};
use crate::verified::VerifiedTokens;

/// Configures a [`Validator`].
///
/// Nothing is accepted until configured: `issuer`, at least one `audience` and at least one
/// algorithm are required, and [`build`](Self::build) names the first field that is missing
/// or wrong.
///
/// ```
/// use std::time::Duration;
/// use scopegate_validator::{Algorithm, Validator};
///
/// let validator = Validator::builder()
///     .issuer("https://idp.example.com") // keys and endpoints found through discovery
///     .audience("https://api.example.com")
///     .algorithms([Algorithm::RS256, Algorithm::ES256])
///     .leeway(Duration::from_secs(10))
///     .introspection("https://api.example.com", "api-secret") // opaque tokens too
///     .build()?;
/// assert_eq!(validator.issuer(), "https://idp.example.com");
///
/// // Forgetting a field is an error that names it, never a validator that accepts anything.
/// let error = Validator::builder().issuer("https://idp.example.com").build().unwrap_err();
/// assert!(error.to_string().contains("audience"), "{error}");
/// # Ok::<(), scopegate_validator::BuildError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ValidatorBuilder {
    issuer: Option<String>,
    jwks_url: Option<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    required_typ: Option<String>,
    any_token_type: bool,
    max_token_bytes: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
    jwks: JwksPolicy,
    verified_cache_capacity: u64,
    clock: Arc<dyn Clock>,
    allow_insecure_http: bool,
    introspection_credentials: Option<(String, Secret)>,
    introspection_endpoint: Option<String>,
    introspect_jwts: bool,
    introspection: IntrospectionPolicy,
    key_source: Option<Arc<dyn KeySource>>,
    introspection_source: Option<Arc<dyn IntrospectionSource>>,
    any_audience: bool,
    accept_expired: bool,
    scope_claim: Option<String>,
    discovery_refresh: Duration,
    revocation_events_credentials: Option<(String, Secret)>,
    revocation_events_endpoint: Option<String>,
    revocation_events: EventsPolicy,
}

/// Longest accepted clock skew: more would keep expired tokens alive.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

impl Default for ValidatorBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            jwks_url: None,
            audiences: Vec::new(),
            algorithms: Vec::new(),
            leeway: Duration::from_secs(30),
            required_typ: None,
            any_token_type: false,
            max_token_bytes: 8 * 1024,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            jwks: JwksPolicy::default(),
            verified_cache_capacity: 100_000,
            clock: Arc::new(SystemClock),
            allow_insecure_http: false,
            introspection_credentials: None,
            introspection_endpoint: None,
            introspect_jwts: false,
            introspection: IntrospectionPolicy::default(),
            key_source: None,
            introspection_source: None,
            any_audience: false,
            accept_expired: false,
            scope_claim: None,
            discovery_refresh: Duration::from_secs(3600),
            revocation_events_credentials: None,
            revocation_events_endpoint: None,
            revocation_events: EventsPolicy::default(),
        }
    }
}

impl ValidatorBuilder {
    /// The issuer (`iss`), compared byte for byte. Unless [`jwks_url`](Self::jwks_url) is set,
    /// its keys are found through OIDC discovery (`{issuer}/.well-known/openid-configuration`,
    /// then RFC 8414's `oauth-authorization-server`). An issuer that is never asked for its
    /// metadata — keys given by `jwks_url` or [`key_source`](Self::key_source), introspection
    /// (if any) at a given endpoint — may be any non-empty name, not only a URL.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Fetch keys from this JWKS URL instead of discovering it.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// An accepted audience: the token's `aud` must contain at least one. May be repeated.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepted audiences, added to any already set.
    pub fn audiences<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// The algorithms a token may be signed with. The key must also allow it.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, at most 5 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Require exactly this `typ` header, e.g. `at+jwt` for RFC 9068 access tokens, instead of
    /// the default rule (which takes `at+jwt`, and untyped tokens shaped like access tokens: see
    /// [`dangerous_accept_any_token_type`](Self::dangerous_accept_any_token_type)). Compared
    /// without case and with an optional `application/` prefix (RFC 7515 §4.1.9).
    pub fn required_typ(mut self, typ: impl Into<String>) -> Self {
        self.required_typ = Some(typ.into());
        self
    }

    /// Tokens longer than this are rejected before any decoding (default 8 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// Connect timeout for discovery and JWKS requests (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Total timeout of one discovery or JWKS request (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Bounds on the key-set lifetime taken from `Cache-Control: max-age` (default 1 min to
    /// 24 h), and the lifetime when the response gives none (default 5 min).
    pub fn jwks_ttl(mut self, min: Duration, default: Duration, max: Duration) -> Self {
        self.jwks.min_ttl = min;
        self.jwks.default_ttl = default;
        self.jwks.max_ttl = max;
        self
    }

    /// A token with an unknown `kid` triggers at most one key-set fetch per this period
    /// (default 30 s), however many such tokens arrive.
    pub fn jwks_refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.jwks.refetch_cooldown = cooldown;
        self
    }

    /// How old the issuer's discovered metadata may get before it is fetched again (default
    /// 1 h, at least 1 min), so that an issuer that moves its `jwks_uri` or introspection
    /// endpoint is followed without a restart. A failed refresh keeps the last metadata.
    pub fn discovery_refresh(mut self, interval: Duration) -> Self {
        self.discovery_refresh = interval;
        self
    }

    /// After a failed fetch, wait this long before trying again (default 5 s); requests in
    /// between get *unavailable* at once instead of piling onto a failing issuer.
    pub fn jwks_failure_backoff(mut self, backoff: Duration) -> Self {
        self.jwks.failure_backoff = backoff;
        self
    }

    /// How long past its lifetime the last good key set keeps serving while the JWKS endpoint
    /// fails (default 12 h). After that, validation is *unavailable*.
    pub fn jwks_max_stale(mut self, max_stale: Duration) -> Self {
        self.jwks.max_stale = max_stale;
        self
    }

    /// Largest JWKS or discovery response accepted (default 256 KiB).
    pub fn max_document_bytes(mut self, bytes: usize) -> Self {
        self.jwks.max_document_bytes = bytes;
        self
    }

    /// Most keys accepted in one JWK Set (default 100).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.jwks.max_keys = keys;
        self
    }

    /// Capacity of the verified-token cache (default 100 000 tokens). A token that verified
    /// once is not verified cryptographically again until it expires or its key is withdrawn.
    pub fn verified_token_cache(mut self, capacity: u64) -> Self {
        self.verified_cache_capacity = capacity;
        self
    }

    /// Turns the verified-token cache off: every token is verified in full every time.
    pub fn without_verified_token_cache(mut self) -> Self {
        self.verified_cache_capacity = 0;
        self
    }

    /// The clock (default: the system clock). Tests use a [`MockClock`](crate::MockClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Allow plain-`http` issuer and JWKS URLs on hosts other than loopback.
    ///
    /// # Security
    /// Keys fetched over plain HTTP can be replaced by anyone on the path, who can then mint
    /// tokens this validator accepts. Loopback URLs are always allowed for development.
    pub fn dangerous_allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// Accept opaque tokens by asking the issuer's RFC 7662 introspection endpoint, found
    /// through discovery unless [`introspection_endpoint`](Self::introspection_endpoint) is
    /// set. The API authenticates with its own credentials (`client_secret_basic`).
    pub fn introspection(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.introspection_credentials = Some((client_id.into(), Secret(client_secret.into())));
        self
    }

    /// Keys held in this process instead of fetched (see [`KeySource`]): for an authorization
    /// server checking its own tokens. Replaces [`jwks_url`](Self::jwks_url) and discovery.
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.key_source = Some(Arc::new(source));
        self
    }

    /// Opaque tokens (and, with [`introspect_jwts`](Self::introspect_jwts), JWTs) judged by an
    /// introspection answered in this process (see [`IntrospectionSource`]), asked on every
    /// request and never cached. Replaces [`introspection`](Self::introspection).
    pub fn introspection_source(mut self, source: impl IntrospectionSource) -> Self {
        self.introspection_source = Some(Arc::new(source));
        self
    }

    /// Accept any `aud` (it must still be well formed). No [`audience`](Self::audience) is
    /// needed then.
    ///
    /// # Security
    /// RFC 8725 §3.9: a token must be meant for its recipient. Only for a caller that judges
    /// the audience itself — an authorization server introspecting its own tokens on behalf
    /// of the APIs they are meant for, or reading a logout hint meant for one of its clients.
    pub fn dangerous_accept_any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Accept tokens past `exp` (still required to carry one). Turns the verified-token cache
    /// off.
    ///
    /// # Security
    /// Only for tokens that identify rather than authorise, such as an `id_token_hint` at
    /// logout, which OpenID Connect RP-Initiated Logout 1.0 §2 accepts after it expired.
    pub fn dangerous_accept_expired(mut self) -> Self {
        self.accept_expired = true;
        self
    }

    /// The claim granted scopes are read from, instead of `scope` (or `scp` when `scope` is
    /// absent): e.g. `roles` for Entra ID application permissions, `realm_access.roles` for
    /// Keycloak realm roles (a dotted path into nested objects). A space-separated string or an
    /// array of scope tokens; absent means no scopes.
    pub fn scope_claim(mut self, claim: impl Into<String>) -> Self {
        self.scope_claim = Some(claim.into());
        self
    }

    /// Accept any JWT the issuer signs, not only access tokens.
    ///
    /// By default a JWT is taken as an access token when its `typ` is `at+jwt` (RFC 9068), or
    /// when it has no `typ` (or the generic `JWT`) and carries no id_token claim (`nonce`,
    /// `at_hash`, `c_hash`), no Keycloak `typ` claim other than `Bearer`, and grants something
    /// (`scope`, `scp` or `roles`). That refuses the id_tokens of Keycloak, Entra ID, Auth0,
    /// Okta and the bundled token service while taking their access tokens.
    ///
    /// # Security
    /// Only for an issuer whose access tokens fail that rule (untyped and without any scope or
    /// role claim); an id_token addressed to a client whose id is also this API's audience is
    /// then accepted as an access token.
    pub fn dangerous_accept_any_token_type(mut self) -> Self {
        self.any_token_type = true;
        self
    }

    /// The introspection endpoint, instead of discovering it.
    pub fn introspection_endpoint(mut self, url: impl Into<String>) -> Self {
        self.introspection_endpoint = Some(url.into());
        self
    }

    /// Also introspect JWTs after verifying them locally, for APIs that must see revocation
    /// within the introspection cache lifetime rather than at `exp` (default off).
    pub fn introspect_jwts(mut self, introspect: bool) -> Self {
        self.introspect_jwts = introspect;
        self
    }

    /// The introspection cache: capacity (default 100 000), the longest an active answer is
    /// used (default 60 s, and never past the token's `exp`), and how long an inactive answer
    /// is remembered (default 10 s).
    pub fn introspection_cache(
        mut self,
        capacity: u64,
        max_ttl: Duration,
        inactive_ttl: Duration,
    ) -> Self {
        self.introspection.capacity = capacity;
        self.introspection.max_ttl = max_ttl;
        self.introspection.inactive_ttl = inactive_ttl;
        self
    }

    /// While the introspection endpoint is down, keep accepting a token whose cached answer
    /// was *active*, for at most `max_stale` past that answer's lifetime (never past `exp`).
    /// Off by default: a revoked token could be accepted that long.
    pub fn introspection_serve_stale(mut self, max_stale: Duration) -> Self {
        self.introspection.serve_stale = Some(max_stale);
        self
    }

    /// Most introspection calls in flight at once (default 32): a flood of unknown tokens
    /// queues here instead of overwhelming the issuer.
    pub fn introspection_max_concurrent_calls(mut self, calls: usize) -> Self {
        self.introspection.max_concurrent_calls = calls;
        self
    }

    /// Subscribe to the issuer's revocation events, so that a token revoked at the issuer is
    /// refused here about a second later instead of at its `exp`: the API's id and secret at
    /// the issuer (the same as for introspection), with which it reads its stream.
    ///
    /// One background task per issuer polls the issuer's RFC 8936 endpoint (found through
    /// `{issuer}/.well-known/ssf-configuration`, SSF 1.0, unless
    /// [`revocation_events_endpoint`](Self::revocation_events_endpoint) is set), holding each
    /// poll open until an event comes. Each Security Event Token is verified against the
    /// issuer's keys (same algorithms, `typ` `secevent+jwt`, `iss`, `aud` = this API's id), and
    /// from then on [`Validator::validate`] refuses ([`InvalidToken::Revoked`]) the token it
    /// names by `jti` or digest, and the tokens of the session (`sid`), user (`sub`) or client
    /// (`client_id`) it names that were issued at or before the event. Each refusal is held
    /// until the event's `tokens_expire_by` (plus the [`leeway`](Self::leeway)). The contract
    /// is `docs/revocation-events.md` in the repository.
    ///
    /// [`build`](Self::build) then spawns the task on the current tokio runtime, so it must be
    /// called inside one; the task ends when the last clone of the validator is dropped.
    /// While the stream fails, tokens are still verified and the failure is logged and
    /// reported by [`Validator::revocation_stream_status`]; once it has failed for longer than
    /// [`revocation_events_max_blind`](Self::revocation_events_max_blind), every token of the
    /// issuer is *unavailable*.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use scopegate_validator::{Algorithm, Validator};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scopegate_validator::BuildError> {
    /// let validator = Validator::builder()
    ///     .issuer("https://login.example.com")
    ///     .audience("https://api.example.com")
    ///     .algorithms([Algorithm::RS256])
    ///     .revocation_events("https://api.example.com", "api-secret")
    ///     .revocation_events_max_blind(Duration::from_secs(120))
    ///     .build()?; // inside a tokio runtime: the subscription starts here
    /// # Ok(()) }
    /// ```
    ///
    /// [`InvalidToken::Revoked`]: crate::InvalidToken::Revoked
    pub fn revocation_events(
        mut self,
        api_id: impl Into<String>,
        api_secret: impl Into<String>,
    ) -> Self {
        self.revocation_events_credentials = Some((api_id.into(), Secret(api_secret.into())));
        self
    }

    /// The RFC 8936 poll endpoint of this API's event stream, instead of discovering it.
    pub fn revocation_events_endpoint(mut self, url: impl Into<String>) -> Self {
        self.revocation_events_endpoint = Some(url.into());
        self
    }

    /// How long the event stream may fail before every token of the issuer is *unavailable*
    /// (default 5 min, between 1 s and 24 h). Before the first answer, counted from the
    /// subscription's start.
    ///
    /// # Security
    /// The bound on how stale revocations may get: while the stream fails, a token revoked
    /// meanwhile is still accepted. Too short, and a brief outage of the issuer takes every
    /// API down with it; the default lets restarts and blips pass while keeping staleness
    /// to minutes.
    pub fn revocation_events_max_blind(mut self, max_blind: Duration) -> Self {
        self.revocation_events.max_blind = max_blind;
        self
    }

    /// Total time one poll may take (default 60 s, between 1 s and 10 min): longer than the
    /// issuer holds a poll open (the token service: 25 s by default), or every held poll
    /// would count as a failure.
    pub fn revocation_events_poll_timeout(mut self, timeout: Duration) -> Self {
        self.revocation_events.poll_timeout = timeout;
        self
    }

    /// How long a refusal is held when its event does not say (`tokens_expire_by`, which the
    /// token service always sends), counted from the event's time; and how old a SET may be
    /// and still be applied (default 24 h: the longest access-token lifetime the token service
    /// allows).
    pub fn revocation_events_retention(mut self, retention: Duration) -> Self {
        self.revocation_events.retention = retention;
        self
    }

    /// The longest wait between attempts while the event stream fails (default 5 s): the
    /// wait doubles from 100 ms up to it, with jitter.
    pub fn revocation_events_max_backoff(mut self, max_backoff: Duration) -> Self {
        self.revocation_events.max_backoff = max_backoff;
        self
    }

    /// Checks every setting and builds the validator. No network request is made here; keys
    /// are fetched on first use (or by [`Validator::refresh_keys`]). With
    /// [`revocation_events`](Self::revocation_events), the subscription's task is spawned on
    /// the current tokio runtime.
    ///
    /// The validator's metric handles are taken here, from the
    /// [`metrics`](https://docs.rs/metrics) recorder installed now: install the exporter before
    /// building (see the crate's Metrics section).
    ///
    /// # Errors
    /// A [`BuildError`] naming the first field that is missing or invalid; with revocation
    /// events, also when called outside a tokio runtime.
    pub fn build(self) -> Result<Validator, BuildError> {
        let issuer = self.issuer.ok_or_else(|| {
            BuildError::new(
                "issuer",
                "required: tokens are accepted from one configured issuer",
            )
        })?;
        // An issuer whose keys are given and whose metadata is never fetched needs not be a
        // URL: a client assertion's issuer is the client's id (RFC 7523 §3).
        let keys_given = self.jwks_url.is_some() || self.key_source.is_some();
        let introspection_discovered = self.introspection_credentials.is_some()
            && self.introspection_endpoint.is_none()
            && self.introspection_source.is_none();
        let events_discovered = self.revocation_events_credentials.is_some()
            && self.revocation_events_endpoint.is_none();
        if keys_given && !introspection_discovered && !events_discovered {
            if issuer.is_empty() {
                return Err(BuildError::new("issuer", "must not be empty"));
            }
        } else {
            let issuer_url = checked_url("issuer", &issuer, self.allow_insecure_http)?;
            if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
                return Err(BuildError::new(
                    "issuer",
                    "must not have a query or fragment",
                ));
            }
        }
        let jwks_url = match &self.jwks_url {
            Some(url) => Some(checked_url("jwks_url", url, self.allow_insecure_http)?),
            None => None,
        };
        let introspection_url = match &self.introspection_endpoint {
            Some(url) => Some(checked_url(
                "introspection_endpoint",
                url,
                self.allow_insecure_http,
            )?),
            None => None,
        };
        let events_url = match &self.revocation_events_endpoint {
            Some(url) if self.revocation_events_credentials.is_some() => Some(checked_url(
                "revocation_events_endpoint",
                url,
                self.allow_insecure_http,
            )?),
            Some(_) => {
                return Err(BuildError::new(
                    "revocation_events",
                    "a revocation events endpoint needs the API's credentials",
                ));
            }
            None => None,
        };
        if self.audiences.is_empty() && !self.any_audience {
            return Err(BuildError::new(
                "audience",
                "at least one audience is required",
            ));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(BuildError::new("audience", "must not be empty"));
        }
        if self.algorithms.is_empty() {
            return Err(BuildError::new(
                "algorithms",
                "at least one algorithm is required",
            ));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(BuildError::new("leeway", "must be at most 5 minutes"));
        }
        if self.required_typ.as_deref().is_some_and(str::is_empty) {
            return Err(BuildError::new("required_typ", "must not be empty"));
        }
        if self.discovery_refresh < Duration::from_secs(60) {
            return Err(BuildError::new(
                "discovery_refresh",
                "must be at least 1 min",
            ));
        }
        if self
            .scope_claim
            .as_deref()
            .is_some_and(|path| path.split('.').any(str::is_empty))
        {
            return Err(BuildError::new(
                "scope_claim",
                "a claim name or a dotted path of names, none empty",
            ));
        }
        if self.required_typ.is_some() && self.any_token_type {
            return Err(BuildError::new(
                "required_typ",
                "a required `typ` and dangerous_accept_any_token_type contradict each other",
            ));
        }
        if !(256..=1024 * 1024).contains(&self.max_token_bytes) {
            return Err(BuildError::new(
                "max_token_bytes",
                "must be between 256 bytes and 1 MiB",
            ));
        }
        for (field, timeout) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if timeout.is_zero() || timeout > Duration::from_secs(120) {
                return Err(BuildError::new(
                    field,
                    "must be more than 0 and at most 120 s",
                ));
            }
        }
        self.jwks.check()?;
        let http = http::client(self.connect_timeout, self.request_timeout)
            .map_err(|error| BuildError::new("http", error.to_string()))?;
        // Every handle is taken here, once: recording is then never a registry look-up.
        metrics::describe();
        let metadata = Arc::new(IssuerMetadata::new(
            issuer.clone(),
            http.clone(),
            self.jwks.max_document_bytes,
            self.allow_insecure_http,
            Arc::clone(&self.clock),
            self.jwks.failure_backoff,
            self.discovery_refresh,
        ));
        let source = match (self.key_source, jwks_url) {
            (Some(_), Some(_)) => {
                return Err(BuildError::new(
                    "key_source",
                    "keys come from a key source or a jwks_url, not both",
                ));
            }
            (Some(source), None) => JwksSource::InProcess(source),
            (None, Some(url)) => JwksSource::Url(url),
            (None, None) => JwksSource::Discovery(Arc::clone(&metadata)),
        };
        let rules = ClaimRules {
            issuer: Arc::from(issuer),
            audiences: self.audiences,
            leeway: self.leeway,
            any_audience: self.any_audience,
            accept_expired: self.accept_expired,
            scope_claim: self.scope_claim,
            interned: Arc::default(),
        };
        let introspector = match (self.introspection_source, self.introspection_credentials) {
            (Some(_), Some(_)) => {
                return Err(BuildError::new(
                    "introspection_source",
                    "opaque tokens go to an in-process source or to an endpoint, not both",
                ));
            }
            (Some(source), None) => {
                if introspection_url.is_some() {
                    return Err(BuildError::new(
                        "introspection_source",
                        "an in-process source takes no introspection endpoint",
                    ));
                }
                self.introspection.check()?;
                Some(Arc::new(Introspector::in_process(
                    source,
                    Arc::clone(&self.clock),
                    rules.clone(),
                    self.introspection,
                )))
            }
            (None, Some((client_id, secret))) => {
                if client_id.is_empty() || secret.0.is_empty() {
                    return Err(BuildError::new(
                        "introspection",
                        "client id and secret must not be empty",
                    ));
                }
                self.introspection.check()?;
                let endpoint = match introspection_url {
                    Some(url) => Endpoint::Configured(url),
                    None => Endpoint::Discovered(metadata),
                };
                Some(Arc::new(Introspector::new(
                    endpoint,
                    client_id,
                    &secret,
                    http.clone(),
                    Arc::clone(&self.clock),
                    rules.clone(),
                    self.introspection,
                )?))
            }
            (None, None) if introspection_url.is_some() || self.introspect_jwts => {
                return Err(BuildError::new(
                    "introspection",
                    "an introspection endpoint or introspect_jwts needs the API's credentials",
                ));
            }
            (None, None) => None,
        };
        let mut algorithms = self.algorithms;
        algorithms.dedup();
        let refetch_cooldown = self.jwks.refetch_cooldown;
        let max_document_bytes = self.jwks.max_document_bytes;
        let jwks = Arc::new(JwksCache::new(
            source,
            self.jwks,
            algorithms.clone(),
            http.clone(),
            Arc::clone(&self.clock),
            JwksMetrics::register(&rules.issuer),
        ));
        let events = match self.revocation_events_credentials {
            None => None,
            Some((api_id, secret)) => {
                if api_id.is_empty() || secret.0.is_empty() {
                    return Err(BuildError::new(
                        "revocation_events",
                        "API id and secret must not be empty",
                    ));
                }
                self.revocation_events.check()?;
                let mut authorization =
                    HeaderValue::from_str(&basic_authorization(&api_id, &secret.0)).map_err(
                        |_| BuildError::new("revocation_events", "credentials do not fit a header"),
                    )?;
                authorization.set_sensitive(true);
                let revocations = Arc::new(Revocations::new(
                    rules.issuer.to_string(),
                    rules.leeway,
                    &self.revocation_events,
                    self.clock.now(),
                ));
                Some(Subscription::start(Subscriber {
                    revocations,
                    jwks: Arc::clone(&jwks),
                    introspector: introspector.clone(),
                    rules: SetRules {
                        issuer: rules.issuer.to_string(),
                        audience: api_id,
                        algorithms: algorithms.clone(),
                        default_hold: self.revocation_events.retention,
                    },
                    source: match events_url {
                        Some(url) => PollSource::Configured(url),
                        None => PollSource::Discovered {
                            allow_insecure_http: self.allow_insecure_http,
                        },
                    },
                    http,
                    authorization,
                    policy: self.revocation_events,
                    max_document_bytes,
                    clock: Arc::clone(&self.clock),
                    refetch_cooldown,
                })?)
            }
        };
        let verified_metrics = VerifiedCacheMetrics::register(&rules.issuer);
        Ok(Validator::from_parts(crate::Inner {
            rules,
            algorithms,
            token_type: match (self.required_typ, self.any_token_type) {
                (Some(typ), _) => TypeRule::Exactly(normalize_typ(&typ)),
                (None, true) => TypeRule::Any,
                (None, false) => TypeRule::AccessToken,
            },
            max_token_bytes: self.max_token_bytes,
            // An expired token must never be answered from the cache as if it were fresh.
            verified: VerifiedTokens::new(
                if self.accept_expired {
                    0
                } else {
                    self.verified_cache_capacity
                },
                verified_metrics,
            ),
            jwks,
            introspector,
            introspect_jwts: self.introspect_jwts,
            clock: self.clock,
            events,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> ValidatorBuilder {
        Validator::builder()
            .issuer("https://idp.example.test")
            .audience("https://api.example.test")
            .algorithms([Algorithm::RS256])
    }

    fn field_of(builder: ValidatorBuilder) -> &'static str {
        builder.build().expect_err("must not build").field()
    }

    #[test]
    fn a_complete_configuration_builds() {
        let validator = complete().build().unwrap();
        assert_eq!(validator.issuer(), "https://idp.example.test");
    }

    #[test]
    fn nothing_is_accepted_until_configured() {
        assert_eq!(field_of(Validator::builder()), "issuer");
        let no_audience = Validator::builder()
            .issuer("https://idp.example.test")
            .algorithms([Algorithm::RS256]);
        assert_eq!(field_of(no_audience), "audience");
        let no_algorithm = Validator::builder()
            .issuer("https://idp.example.test")
            .audience("https://api.test");
        assert_eq!(field_of(no_algorithm), "algorithms");
        assert_eq!(field_of(complete().algorithms([])), "algorithms");
        assert_eq!(field_of(complete().audience("")), "audience");
    }

    #[test]
    fn errors_name_the_field() {
        let error = Validator::builder().build().unwrap_err();
        assert!(error.to_string().contains("`issuer`"), "{error}");
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback_or_with_the_opt_in() {
        assert_eq!(
            field_of(complete().issuer("http://idp.example.test")),
            "issuer"
        );
        assert_eq!(
            field_of(complete().jwks_url("http://idp.example.test/jwks")),
            "jwks_url"
        );
        assert_eq!(
            field_of(complete().issuer("ftp://idp.example.test")),
            "issuer"
        );
        assert_eq!(field_of(complete().issuer("not a url")), "issuer");
        // Unless its keys are given and nothing is discovered: then any non-empty name.
        let given = || complete().jwks_url("https://idp.test/keys");
        assert!(given().issuer("client-7").build().is_ok());
        assert_eq!(field_of(given().issuer("")), "issuer");
        assert_eq!(
            field_of(complete().issuer("https://idp.test/?tenant=1")),
            "issuer"
        );
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://localhost:1",
            "http://[::1]:80",
        ] {
            complete().issuer(loopback).build().unwrap();
        }
        complete()
            .issuer("http://idp.example.test")
            .dangerous_allow_insecure_http()
            .build()
            .unwrap();
    }

    #[test]
    fn bounds_are_checked() {
        assert_eq!(
            field_of(complete().leeway(Duration::from_secs(301))),
            "leeway"
        );
        assert_eq!(field_of(complete().max_token_bytes(10)), "max_token_bytes");
        assert_eq!(
            field_of(complete().connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            field_of(complete().request_timeout(Duration::from_secs(3600))),
            "request_timeout"
        );
        let minute = Duration::from_secs(60);
        assert_eq!(
            field_of(complete().jwks_ttl(minute * 2, minute, minute * 3)),
            "jwks_ttl"
        );
        assert_eq!(
            field_of(complete().jwks_refetch_cooldown(Duration::ZERO)),
            "jwks_refetch_cooldown"
        );
        assert_eq!(
            field_of(complete().max_document_bytes(10)),
            "max_document_bytes"
        );
        assert_eq!(field_of(complete().max_keys(0)), "max_keys");
        assert_eq!(
            field_of(complete().jwks_max_stale(Duration::MAX)),
            "jwks_max_stale"
        );
        assert_eq!(
            field_of(complete().jwks_ttl(minute, minute, Duration::MAX)),
            "jwks_ttl"
        );
        assert_eq!(
            field_of(complete().jwks_failure_backoff(Duration::MAX)),
            "jwks_failure_backoff"
        );
        assert_eq!(field_of(complete().required_typ("")), "required_typ");
    }

    #[test]
    fn typ_values_are_normalised_as_media_types() {
        assert_eq!(normalize_typ("application/AT+JWT"), "at+jwt");
        assert_eq!(normalize_typ("at+jwt"), "at+jwt");
    }
}
